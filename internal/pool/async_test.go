package pool

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

// uringDev opens a sparse file of size bytes through io_uring, skipping
// the test where io_uring is unavailable.
func uringDev(t testing.TB, size int64) *blockdev.Uring {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pool.img")
	if err := truncate(path, size); err != nil {
		t.Fatal(err)
	}
	d, err := blockdev.OpenUring(path, blockdev.FileOptions{BlockSize: 4096})
	if err != nil {
		t.Skipf("io_uring: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestAsyncConformance(t *testing.T) {
	size := int64(blockdevtest.MinSize)
	for _, kind := range []string{"thick", "thin", "clone"} {
		t.Run(kind, func(t *testing.T) {
			blockdevtest.RunAsync(t, func(t *testing.T) blockdev.Device {
				p := mkPool(t, uringDev(t, 64<<20), testCS)
				var r *Replica
				switch kind {
				case "thick":
					r = mustReplica(t, p, "r", size, false)
				case "thin":
					r = mustReplica(t, p, "r", size, true)
				case "clone":
					src := mustReplica(t, p, "src", size, true)
					write(t, src, pattern(5, 1<<20), 0)
					if _, err := p.CreateSnapshot(ctx, "src", "snap", ""); err != nil {
						t.Fatal(err)
					}
					c, err := p.CloneSnapshot(ctx, "snap", "r", "")
					if err != nil {
						t.Fatal(err)
					}
					r = c
				}
				t.Cleanup(func() { check(t, p) })
				return &closingReplica{Replica: r}
			})
		})
	}
}

// TestAsyncPaths pins which I/O starts asynchronously and which falls back.
func TestAsyncPaths(t *testing.T) {
	p := mkPool(t, uringDev(t, 64<<20), testCS)
	thick := mustReplica(t, p, "thick", 4<<20, false)
	thin := mustReplica(t, p, "thin", 4<<20, true)
	buf := blockdev.AlignedBuffer(4096)
	w := &asyncWaiter{ch: make(chan error, 1)}
	try := func(r *Replica, write bool, off int64, n int) bool {
		t.Helper()
		if !r.StartQueued(write, buf[:n], off, w) {
			return false
		}
		r.Submit()
		if err := <-w.ch; err != nil {
			t.Fatalf("async I/O: %v", err)
		}
		return true
	}
	if !try(thick, false, 0, 4096) || !try(thick, true, 8192, 4096) {
		t.Error("thick replica: plain read/write did not start asynchronously")
	}
	if try(thin, false, 0, 4096) || try(thin, true, 0, 4096) {
		t.Error("thin replica: I/O to an unallocated cluster started asynchronously")
	}
	write(t, thin, pattern(1, 4096), 0)
	if !try(thin, true, 4096, 4096) || !try(thin, false, 0, 4096) {
		t.Error("thin replica: I/O to an allocated cluster did not start asynchronously")
	}
	big := blockdev.AlignedBuffer(8192)
	if thick.StartQueued(false, big, testCS-4096, w) {
		t.Error("I/O spanning two clusters started asynchronously")
	}
	if _, err := p.CreateSnapshot(ctx, "thick", "s", ""); err != nil {
		t.Fatal(err)
	}
	if try(thick, true, 0, 4096) {
		t.Error("write to a cluster shared with a snapshot started asynchronously (needs copy-on-write)")
	}
	if !try(thick, false, testCS, 4096) {
		t.Error("read through to the snapshot's cluster did not start asynchronously")
	}
	check(t, p)
}

type asyncWaiter struct {
	ch  chan error
	err error
}

func (w *asyncWaiter) IODone(n int, err error) { w.err = err }
func (w *asyncWaiter) IOFlush()                { w.ch <- w.err }

// TestAsyncSnapshotRace takes snapshots while a writer keeps bumping a
// counter in one block with asynchronous writes: every snapshot must hold
// a value between the last write completed before the snapshot started
// and the last write started before it returned, and reads of the
// replica never go backwards.
func TestAsyncSnapshotRace(t *testing.T) {
	p := mkPool(t, uringDev(t, 64<<20), testCS)
	r := mustReplica(t, p, "r", 4<<20, false)
	var started, completed atomic.Uint64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		buf := blockdev.AlignedBuffer(4096)
		w := &asyncWaiter{ch: make(chan error, 1)}
		for v := uint64(1); ; v++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			binary.LittleEndian.PutUint64(buf, v)
			started.Store(v)
			var err error
			if r.StartQueued(true, buf, 0, w) {
				r.Submit()
				err = <-w.ch
			} else {
				_, err = r.WriteAt(buf, 0)
			}
			if err != nil {
				done <- err
				return
			}
			completed.Store(v)
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline) || i < 10; i++ {
		lo := completed.Load()
		name := "s" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		s, err := p.CreateSnapshot(ctx, "r", name, "")
		if err != nil {
			t.Fatal(err)
		}
		hi := started.Load()
		got := make([]byte, 4096)
		if _, err := s.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if v := binary.LittleEndian.Uint64(got); v < lo || v > hi {
			t.Fatalf("snapshot %d holds %d; want within [%d, %d]", i, v, lo, hi)
		}
		if i >= 40 {
			break
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	last := completed.Load()
	got := read(t, r, 4096, 0)
	if v := binary.LittleEndian.Uint64(got); v != last {
		t.Fatalf("replica holds %d; last completed write was %d", v, last)
	}
	if !bytes.Equal(got[8:], make([]byte, 4096-8)) {
		t.Fatal("replica block tail corrupted")
	}
	check(t, p)
}

func TestQueueConformance(t *testing.T) {
	size := int64(blockdevtest.MinSize)
	for _, thin := range []bool{false, true} {
		t.Run(map[bool]string{false: "thick", true: "thin"}[thin], func(t *testing.T) {
			blockdevtest.RunQueue(t, func(t *testing.T) blockdev.Device {
				p := mkPool(t, uringDev(t, 64<<20), testCS)
				r := mustReplica(t, p, "r", size, thin)
				t.Cleanup(func() { check(t, p) })
				return &closingReplica{Replica: r}
			})
		})
	}
}
