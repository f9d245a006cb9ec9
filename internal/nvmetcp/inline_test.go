package nvmetcp

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

// TestPipelinedWritesOverlap: a host with several large writes in flight
// on one queue gets them overlapped on a slow device, although each
// command's data is read straight into its slot (nothing else buffered
// when it is ready); one writer at a time keeps the inline path.
func TestPipelinedWritesOverlap(t *testing.T) {
	mem, err := blockdev.NewMalloc("slow", 8<<20, 4096)
	must(t, err)
	dev := &blockdevtest.SlowWrites{Device: mem, Delay: 2 * time.Millisecond}
	tg := startTarget(t, TargetConfig{})
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("inline"), Device: dev, AllowAnyHost: true}))
	d := dial(t, tg, Config{SubNQN: NQNFor("inline"), IOQueues: 1, QueueSize: 64})
	defer d.Close()

	const size = 128 << 10
	for i := 0; i < 10; i++ {
		if _, err := d.WriteAt(bytes.Repeat([]byte{byte(i)}, size), 0); err != nil {
			t.Fatal(err)
		}
	}
	if m := dev.MaxOverlap(); m != 1 {
		t.Fatalf("one writer at a time, yet %d writes overlapped", m)
	}

	const writers, rounds = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				if _, err := d.WriteAt(bytes.Repeat([]byte{byte(w*rounds + r)}, size), int64(w)*size); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("max overlap %d", dev.MaxOverlap())
	if m := dev.MaxOverlap(); m < 2 {
		t.Errorf("%d writers with 128 KiB writes on one queue never overlapped on a slow device", writers)
	}
	for w := 0; w < writers; w++ {
		got := make([]byte, size)
		if _, err := d.ReadAt(got, int64(w)*size); err != nil {
			t.Fatal(err)
		}
		if want := bytes.Repeat([]byte{byte(w*rounds + rounds - 1)}, size); !bytes.Equal(got, want) {
			t.Fatalf("writer %d: data mismatch", w)
		}
	}
}
