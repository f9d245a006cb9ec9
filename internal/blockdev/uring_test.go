package blockdev_test

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

// TestUringConcurrentHandoff runs more concurrent submitters than the ring
// has slots, so the reaping lead passes between submitters many times, and
// checks every block reads back what its owner wrote.
func TestUringConcurrentHandoff(t *testing.T) {
	skipNoUring(t)
	const (
		workers = 96 // > the ring's 64 slots
		rounds  = 40
		bs      = 4096
	)
	d, err := blockdev.OpenUring(tempFile(t, "", workers*bs), blockdev.FileOptions{BlockSize: bs})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := int64(w * bs)
			wbuf, rbuf := make([]byte, bs), make([]byte, bs)
			for r := range rounds {
				for i := range wbuf {
					wbuf[i] = byte(w + r + i)
				}
				if _, err := d.WriteAt(wbuf, off); err != nil {
					errs <- err
					return
				}
				if r%8 == 0 {
					if err := d.Flush(); err != nil {
						errs <- err
						return
					}
				}
				if _, err := d.ReadAt(rbuf, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(wbuf, rbuf) {
					errs <- fmt.Errorf("block at %d: data mismatch in round %d", off, r)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// asyncOp collects one Start result.
type asyncOp struct {
	n       int
	err     error
	flushed chan struct{}
}

func (a *asyncOp) IODone(n int, err error) { a.n, a.err = n, err }
func (a *asyncOp) IOFlush()                { close(a.flushed) }

// TestUringStart mixes asynchronous (Start) and synchronous operations from
// many goroutines and checks results and data.
func TestUringStart(t *testing.T) {
	skipNoUring(t)
	const (
		workers = 80
		rounds  = 30
		bs      = 4096
	)
	d, err := blockdev.OpenUring(tempFile(t, "", workers*bs), blockdev.FileOptions{BlockSize: bs})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := int64(w * bs)
			wbuf, rbuf := alignedBuf(bs), alignedBuf(bs)
			do := func(write bool, p []byte) error {
				if w%2 == 0 { // half the goroutines use Start, falling back like callers must
					a := &asyncOp{flushed: make(chan struct{})}
					if d.Start(write, p, off, a) {
						<-a.flushed
						if a.err == nil && a.n != len(p) {
							return fmt.Errorf("async n = %d", a.n)
						}
						return a.err
					}
				}
				var err error
				if write {
					_, err = d.WriteAt(p, off)
				} else {
					_, err = d.ReadAt(p, off)
				}
				return err
			}
			for r := range rounds {
				for i := range wbuf {
					wbuf[i] = byte(w + r + i)
				}
				if err := do(true, wbuf); err != nil {
					errs <- err
					return
				}
				if err := do(false, rbuf); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(wbuf, rbuf) {
					errs <- fmt.Errorf("block at %d: data mismatch in round %d", off, r)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d.Start(false, alignedBuf(bs), int64(workers*bs), &asyncOp{}) {
		t.Error("Start past the end started")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d.Start(false, alignedBuf(bs), 0, &asyncOp{}) {
		t.Error("Start after Close started")
	}
}

func alignedBuf(n int) []byte {
	raw := make([]byte, n+4096)
	skip := (4096 - int(uintptr(unsafe.Pointer(&raw[0]))%4096)) % 4096
	return raw[skip : skip+n : skip+n]
}

func TestUringAsyncConformance(t *testing.T) {
	blockdevtest.RunAsync(t, func(t *testing.T) blockdev.Device {
		d, err := blockdev.OpenUring(tempFile(t, "", blockdevtest.MinSize), blockdev.FileOptions{BlockSize: 4096})
		if err != nil {
			t.Skipf("io_uring: %v", err)
		}
		return d
	})
}

func TestUringQueueConformance(t *testing.T) {
	blockdevtest.RunQueue(t, func(t *testing.T) blockdev.Device {
		d, err := blockdev.OpenUring(tempFile(t, "", blockdevtest.MinSize), blockdev.FileOptions{BlockSize: 4096})
		if err != nil {
			t.Skipf("io_uring: %v", err)
		}
		return d
	})
}

// joinDone counts completions and records the last error (owner only).
type joinDone struct {
	n   int
	err error
}

func (d *joinDone) IODone(_ int, err error) {
	d.n++
	if err != nil {
		d.err = err
	}
}
func (d *joinDone) IOFlush() {}

// TestUringJoinQueue: a second device joins a queue another opened; one
// Wait reports both devices' operations, each lands on its own file, an
// operation out of the joined device's range is refused, and a queue that
// is not an io_uring cannot be joined.
func TestUringJoinQueue(t *testing.T) {
	a, err := blockdev.OpenUring(tempFile(t, "", 1<<20), blockdev.FileOptions{BlockSize: 4096})
	if err != nil {
		t.Skipf("io_uring: %v", err)
	}
	defer a.Close()
	b, err := blockdev.OpenUring(tempFile(t, "", 2<<20), blockdev.FileOptions{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	q, err := a.OpenQueue()
	if err != nil {
		t.Skipf("no queue: %v", err)
	}
	v, err := b.JoinQueue(q)
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := alignedBuf(4096), alignedBuf(4096)
	for i := range pa {
		pa[i], pb[i] = 'a', 'b'
	}
	var done joinDone
	if !q.StartQueued(true, pa, 0, &done) || !v.StartQueued(true, pb, 1<<20, &done) {
		t.Fatal("a write was refused")
	}
	if v.StartQueued(true, pb, 2<<20, &done) {
		t.Fatal("a write past the joined device's end started")
	}
	if v.Inflight() != 2 {
		t.Fatalf("view sees %d in flight, want 2", v.Inflight())
	}
	if err := blockdev.WaitFd(v, -1); err != nil || done.n != 2 || done.err != nil {
		t.Fatalf("wait: %v, %d done, err %v", err, done.n, done.err)
	}
	if err := v.Close(); err != nil { // a view's Close leaves the queue open
		t.Fatal(err)
	}
	got := alignedBuf(4096)
	if _, err := b.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, pb) {
		t.Fatalf("joined device: %v, data right %v", err, bytes.Equal(got, pb))
	}
	if _, err := a.ReadAt(got, 0); err != nil || !bytes.Equal(got, pa) {
		t.Fatalf("opening device: %v, data right %v", err, bytes.Equal(got, pa))
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if v.StartQueued(false, got, 0, &done) {
		t.Fatal("view started an operation on a closed queue")
	}
	if _, err := b.JoinQueue(otherQueue{}); !errors.Is(err, blockdev.ErrNotSupported) {
		t.Fatalf("joining a foreign queue: %v", err)
	}
}

// otherQueue is a Queue that is not an io_uring.
type otherQueue struct{ blockdev.Queue }
