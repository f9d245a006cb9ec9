package blockdevtest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// RunAsync runs the blockdev.Async conformance cases against devices that
// implement it (open must return one). A StartQueued that returns false is
// allowed anywhere (the caller falls back to ReadAt/WriteAt, as the
// contract says), but a write to a range written before must start
// asynchronously at least sometimes. The suite checks data, exactly-once
// completions and batches submitted with one Submit.
func RunAsync(t *testing.T, open func(t *testing.T) blockdev.Device) {
	tests := []struct {
		name string
		f    func(t *testing.T, d blockdev.Device, a blockdev.Async)
	}{
		{"RoundTrip", testAsyncRoundTrip},
		{"Refuses", testAsyncRefuses},
		{"Concurrent", testAsyncConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := open(t)
			t.Cleanup(func() { d.Close() })
			a, ok := d.(blockdev.Async)
			if !ok {
				t.Fatalf("%T does not implement blockdev.Async", d)
			}
			tc.f(t, d, a)
		})
	}
}

// waiter is an IOCompletion that checks the exactly-once contract.
type waiter struct {
	n       int
	err     error
	dones   atomic.Int32
	flushes atomic.Int32
	ch      chan struct{}
}

func newWaiter() *waiter { return &waiter{ch: make(chan struct{}, 1)} }

func (w *waiter) IODone(n int, err error) { w.n, w.err = n, err; w.dones.Add(1) }

func (w *waiter) IOFlush() {
	w.flushes.Add(1)
	w.ch <- struct{}{}
}

// wait returns the result, failing on a lost or repeated completion.
func (w *waiter) wait() (int, error) {
	select {
	case <-w.ch:
	case <-time.After(30 * time.Second):
		return 0, errors.New("asynchronous I/O never completed")
	}
	if d, f := w.dones.Load(), w.flushes.Load(); d != 1 || f != 1 {
		return 0, fmt.Errorf("IODone called %d times, IOFlush %d times; want 1 and 1", d, f)
	}
	return w.n, w.err
}

// asyncIO runs one I/O through a (falling back to d), reporting whether
// it ran asynchronously.
func asyncIO(d blockdev.Device, a blockdev.Async, write bool, p []byte, off int64) (bool, error) {
	w := newWaiter()
	if !a.StartQueued(write, p, off, w) {
		var err error
		if write {
			_, err = d.WriteAt(p, off)
		} else {
			_, err = d.ReadAt(p, off)
		}
		return false, err
	}
	a.Submit()
	n, err := w.wait()
	if err == nil && n != len(p) {
		err = fmt.Errorf("completed %d of %d bytes without an error", n, len(p))
	}
	return true, err
}

func testAsyncRoundTrip(t *testing.T, d blockdev.Device, a blockdev.Async) {
	bs := d.BlockSize()
	p := blockdev.AlignedBuffer(16 * bs)
	copy(p, pattern(7, len(p)))
	off := int64(4 * bs)
	mustWrite(t, d, make([]byte, len(p)), off) // allocate the range first
	var started int
	for i := range 16 {
		blk := p[i*bs : (i+1)*bs]
		as, err := asyncIO(d, a, true, blk, off+int64(i*bs))
		if err != nil {
			t.Fatalf("write block %d: %v", i, err)
		}
		if as {
			started++
		}
	}
	if started == 0 {
		t.Fatal("no write ran asynchronously on an allocated range")
	}
	got := blockdev.AlignedBuffer(len(p))
	for i := range 16 {
		if _, err := asyncIO(d, a, false, got[i*bs:(i+1)*bs], off+int64(i*bs)); err != nil {
			t.Fatalf("read block %d: %v", i, err)
		}
	}
	expectEqual(t, "async read of async writes", got, p, bs)
	expectEqual(t, "sync read of async writes", mustRead(t, d, len(p), off), p, bs)
}

func testAsyncRefuses(t *testing.T, d blockdev.Device, a blockdev.Async) {
	bs := d.BlockSize()
	w := newWaiter()
	buf := blockdev.AlignedBuffer(bs)
	cases := []struct {
		name  string
		write bool
		p     []byte
		off   int64
	}{
		{"empty", false, buf[:0], 0},
		{"past end", false, buf, d.Size()},
		{"crosses end", true, blockdev.AlignedBuffer(2 * bs), d.Size() - int64(bs)},
		{"negative", true, buf, -int64(bs)},
		{"misaligned offset", false, buf, 1},
	}
	for _, c := range cases {
		if a.StartQueued(c.write, c.p, c.off, w) {
			a.Submit()
			if _, err := w.wait(); err == nil {
				t.Errorf("%s: started and succeeded", c.name)
			}
			w = newWaiter()
		}
	}
	a.Submit() // nothing queued: must not block or fail
}

func testAsyncConcurrent(t *testing.T, d blockdev.Device, a blockdev.Async) {
	bs := d.BlockSize()
	const workers, depth, rounds = 4, 8, 24
	region := int64(depth * bs)
	if region*workers > d.Size() {
		t.Skip("device too small")
	}
	mustWrite(t, d, make([]byte, region*workers), 0)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			base := int64(w) * region
			bufs := make([][]byte, depth)
			ws := make([]*waiter, depth)
			for r := range rounds {
				write := r%2 == 0
				// Start a whole batch, submit once, then wait for all.
				for i := range depth {
					if bufs[i] == nil {
						bufs[i] = blockdev.AlignedBuffer(bs)
					}
					if write {
						copy(bufs[i], pattern(uint64(w<<20|r<<8|i), bs))
					} else {
						clear(bufs[i])
					}
					ws[i] = newWaiter()
					if !a.StartQueued(write, bufs[i], base+int64(i*bs), ws[i]) {
						ws[i] = nil
						var err error
						if write {
							_, err = d.WriteAt(bufs[i], base+int64(i*bs))
						} else {
							_, err = d.ReadAt(bufs[i], base+int64(i*bs))
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}
				a.Submit()
				for i := range depth {
					if ws[i] == nil {
						continue
					}
					if n, err := ws[i].wait(); err != nil || n != bs {
						errs <- fmt.Errorf("worker %d round %d op %d: n=%d err=%v", w, r, i, n, err)
						return
					}
				}
				if !write {
					for i := range depth {
						if want := pattern(uint64(w<<20|(r-1)<<8|i), bs); !bytes.Equal(bufs[i], want) {
							errs <- fmt.Errorf("worker %d round %d block %d: read back differs", w, r, i)
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
