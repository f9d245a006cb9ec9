package nexus

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// instance is one opened device of a child, with the worker goroutines
// that perform its I/O. A child gets a new instance each time it is
// (re)opened. The instance owns its workers: close stops them.
type instance struct {
	c     *child
	dev   blockdev.Device
	async blockdev.Async // dev, when it starts reads and writes asynchronously

	reqs chan *subOp
	stop chan struct{}
	wg   sync.WaitGroup // workers

	// outstanding counts sub-ops queued or executing: the read policy
	// picks the healthy child with the fewest, and a closed instance with
	// outstanding > 0 has hung I/O (ErrChildBusy on online).
	outstanding atomic.Int64
	senders     atomic.Int64 // submitters between the closing check and the send
	closing     atomic.Bool
	closeOnce   sync.Once

	inline inflight // I/Os running inline in callers, for the watchdog
}

func newInstance(c *child, dev blockdev.Device, workers int) *instance {
	in := &instance{c: c, dev: dev, reqs: make(chan *subOp, defaultQueueLen), stop: make(chan struct{})}
	in.async, _ = dev.(blockdev.Async)
	in.wg.Add(workers)
	for range workers {
		go in.worker()
	}
	return in
}

func (in *instance) worker() {
	defer in.wg.Done()
	for {
		select {
		case s := <-in.reqs:
			err := s.exec()
			in.outstanding.Add(-1) // before complete: the caller may read the counter next
			s.complete(err)
		case <-in.stop:
			in.drain()
			return
		}
	}
}

// drain fails every queued sub-op without touching the device.
func (in *instance) drain() {
	for {
		select {
		case s := <-in.reqs:
			s.complete(fmt.Errorf("nexus: child %s: %w", in.c.uri, blockdev.ErrClosed))
			in.outstanding.Add(-1)
		default:
			return
		}
	}
}

// submit queues s. It never blocks: a closing instance or a full queue
// (the device stopped completing I/O) is an error for the caller to
// complete s with.
func (in *instance) submit(s *subOp) error {
	in.senders.Add(1)
	defer in.senders.Add(-1)
	if in.closing.Load() {
		return fmt.Errorf("nexus: child %s: %w", in.c.uri, blockdev.ErrClosed)
	}
	in.outstanding.Add(1)
	select {
	case in.reqs <- s:
		return nil
	default:
		in.outstanding.Add(-1)
		return fmt.Errorf("nexus: child %s: queue full: %w", in.c.uri, blockdev.ErrBusy)
	}
}

// startAsync starts a read or write sub-op on a device that can run it
// asynchronously (blockdev.Async): no worker is woken, and the device's
// completion reports the result (subOp.IODone). It returns false, having
// started nothing, for other sub-ops or when the device declines; the
// caller then submits s to the workers. The caller calls the device's
// Submit after starting the request's sub-ops.
func (in *instance) startAsync(s *subOp, cb blockdev.IOCompletion) bool {
	return in.async != nil && in.startAsyncOn(in.async, s, cb)
}

// startAsyncOn is startAsync on a, the instance's device or a per-thread
// queue of it (queue.go).
func (in *instance) startAsyncOn(a blockdev.Async, s *subOp, cb blockdev.IOCompletion) bool {
	r := s.r
	if r.kind != opRead && r.kind != opWrite {
		return false
	}
	in.senders.Add(1)
	defer in.senders.Add(-1)
	if in.closing.Load() {
		return false
	}
	in.outstanding.Add(1)
	if !a.StartQueued(r.kind == opWrite, s.buf, r.off, cb) {
		in.outstanding.Add(-1)
		return false
	}
	return true
}

// IODone completes a sub-op of a synchronous request that its device ran
// asynchronously (blockdev.IOCompletion). A timed-out (abandoned) sub-op
// ignores it, as a late worker result.
func (s *subOp) IODone(n int, err error) {
	s.inst.outstanding.Add(-1) // before complete: the caller may read the counter next
	s.complete(err)
}

// IOFlush does nothing: the request's waiter was woken by IODone. It must
// not touch s, which the finished request may already be reusing.
func (s *subOp) IOFlush() {}

// closeGrace caps how long close waits for workers to finish their
// current call before closing the device under them.
const closeGrace = 200 * time.Millisecond

// close stops the workers and closes the device. Workers stuck in a hung
// device call are waited for at most grace (capped at closeGrace); the
// device is closed anyway (that is what unsticks most devices) and the
// stuck goroutines exit when the call returns. close is idempotent.
func (in *instance) close(grace time.Duration) {
	in.closeOnce.Do(func() {
		in.closing.Store(true)
		for in.senders.Load() > 0 { // submitters never block, so this is short
			runtime.Gosched()
		}
		close(in.stop)
		done := make(chan struct{})
		go func() {
			in.wg.Wait()
			// Asynchronous sub-ops have no worker: wait for them too.
			for i := 0; in.outstanding.Load() > 0 && i < 1000; i++ {
				time.Sleep(time.Millisecond)
			}
			close(done)
		}()
		t := time.NewTimer(min(grace, closeGrace))
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
		in.dev.Close()
		in.drain()
	})
}

// busy reports whether I/O to this instance is still executing.
func (in *instance) busy() bool { return in.outstanding.Load() > 0 }
