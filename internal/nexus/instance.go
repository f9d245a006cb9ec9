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
	c   *child
	dev blockdev.Device

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
		go func() { in.wg.Wait(); close(done) }()
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
