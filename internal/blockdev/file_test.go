package blockdev_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

func TestAllocatedSeekData(t *testing.T) {
	opens := map[string]opener{"aio": openFileDev, "uring": openUringDev}
	for name, open := range opens {
		t.Run(name, func(t *testing.T) {
			if name == "uring" {
				skipNoUring(t)
			}
			d, err := open(tempFile(t, "", 8<<20), blockdev.FileOptions{BlockSize: 4096})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			a := d.(blockdev.Allocation)
			check := func(off, n int64, want bool) {
				t.Helper()
				got, err := a.Allocated(off, n)
				if err != nil || got != want {
					t.Fatalf("Allocated(%d, %d) = %v, %v; want %v", off, n, got, err, want)
				}
			}
			check(0, 8<<20, false)
			buf := make([]byte, 4096)
			buf[0] = 1
			if _, err := d.WriteAt(buf, 4<<20); err != nil {
				t.Fatal(err)
			}
			check(0, 8<<20, true)
			check(4<<20, 4096, true)
			check(0, 1<<20, false)
			if err := d.Unmap(0, 8<<20); err != nil {
				t.Fatal(err)
			}
			check(0, 8<<20, false)
		})
	}
}

// TestUringCloseStopsReaper checks that Close stops the reaper goroutine.
func TestUringCloseStopsReaper(t *testing.T) {
	skipNoUring(t)
	path := tempFile(t, "", 1<<20)
	before := runtime.NumGoroutine()
	for range 20 {
		d, err := blockdev.OpenUring(path, blockdev.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.WriteAt(make([]byte, 512), 0); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before, %d after closing 20 uring devices", before, runtime.NumGoroutine())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
