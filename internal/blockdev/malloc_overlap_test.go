package blockdev

import (
	"bytes"
	"sync"
	"testing"
)

// TestMallocOverlappingIO: writers of two patterns and a reader hammer the
// same 4 KiB block. A host may do that (the result is undefined on a disk
// too), but within one chunk every read must see one whole write, never a
// mix, and under -race it must not be a data race.
func TestMallocOverlappingIO(t *testing.T) {
	m, err := NewMalloc("overlap", 4<<20, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const off, n, rounds = 1 << 20, 4096, 20000
	a, b := bytes.Repeat([]byte{0xAA}, n), bytes.Repeat([]byte{0x55}, n)
	if _, err := m.WriteAt(a, off); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range [][]byte{a, b} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := m.WriteAt(p, off); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	buf := make([]byte, n)
	torn := 0
	for range rounds {
		if _, err := m.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, a) && !bytes.Equal(buf, b) {
			torn++
		}
	}
	close(stop)
	wg.Wait()
	if torn > 0 {
		t.Fatalf("%d of %d reads saw a mix of two writes", torn, rounds)
	}
}
