package perf

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// runAsync drives an Async device: every submitter keeps one I/O in
// flight, and its completion (on the device's completion goroutine) starts
// the next one, so no goroutine is woken per I/O. IODone accounts the I/O
// and queues the next; IOFlush, which follows a batch of IODone calls,
// submits everything the batch queued. An I/O the device refuses to start
// (reconnecting, saturated) runs synchronously on a goroutine of its own,
// never on the completion goroutine, which may be the one that would
// complete it.
func runAsync(dev blockdev.Device, a blockdev.Async, subs []submitter, o *Options, blocks int64, stop *atomic.Bool) {
	var wg sync.WaitGroup
	ops := make([]asyncOp, len(subs))
	for i := range ops {
		op := &ops[i]
		op.s, op.dev, op.a, op.o, op.blocks, op.stop, op.wg = &subs[i], dev, a, o, blocks, stop, &wg
		wg.Add(1)
		switch op.next(true) {
		case stateSync:
			go op.syncLoop()
		case stateEnded:
			wg.Done()
		}
	}
	a.Submit()
	wg.Wait()
}

// asyncOp states after next.
const (
	stateStarted = iota // an I/O is queued on the device
	stateSync           // the device refused the I/O: run it synchronously
	stateEnded          // the run is over (or the device closed)
)

// asyncOp is one submitter's I/O loop on an Async device. Only one of its
// I/Os is in flight at a time, so its fields need no lock.
type asyncOp struct {
	s      *submitter
	dev    blockdev.Device
	a      blockdev.Async
	o      *Options
	blocks int64
	stop   *atomic.Bool
	wg     *sync.WaitGroup // Done once when the loop ends

	read bool
	off  int64
	t0   time.Time
	// state is what the IOFlush after the latest IODone must do. It is
	// written only while none of the op's I/Os is in flight (before
	// StartQueued, or after a refusal or the end), because the next I/O's
	// IODone may run before this I/O's IOFlush; IOFlush swaps it back to
	// stateStarted, so an end or refusal is acted on exactly once.
	state atomic.Int32
}

// next picks the submitter's next I/O and queues it on the device. A
// refusal is recorded in state for IOFlush unless the caller is syncLoop,
// which handles it itself.
func (op *asyncOp) next(inSync bool) int {
	if op.stop.Load() {
		return stateEnded
	}
	op.off, op.read = op.s.pick(op.o, op.blocks)
	op.t0 = time.Now()
	op.state.Store(stateStarted)
	if op.a.StartQueued(!op.read, op.s.buf, op.off, op) {
		return stateStarted
	}
	if !inSync {
		op.state.Store(stateSync)
	}
	return stateSync
}

// syncLoop runs refused I/Os with ReadAt/WriteAt until the device accepts
// one again or the run ends.
func (op *asyncOp) syncLoop() {
	for {
		var err error
		if op.read {
			_, err = op.dev.ReadAt(op.s.buf, op.off)
		} else {
			_, err = op.dev.WriteAt(op.s.buf, op.off)
		}
		if !op.s.account(op.read, time.Since(op.t0), err) {
			op.wg.Done()
			return
		}
		switch op.next(true) {
		case stateStarted:
			op.a.Submit()
			return
		case stateEnded:
			op.wg.Done()
			return
		}
	}
}

// IODone accounts the finished I/O and queues the next.
func (op *asyncOp) IODone(_ int, err error) {
	if !op.s.account(op.read, time.Since(op.t0), err) || op.next(false) == stateEnded {
		op.state.Store(stateEnded)
	}
}

// IOFlush submits what the batch queued, or hands a refused I/O to a
// goroutine, or ends the loop.
func (op *asyncOp) IOFlush() {
	switch op.state.Swap(stateStarted) {
	case stateStarted:
		op.a.Submit()
	case stateSync:
		go op.syncLoop()
	default:
		op.wg.Done()
	}
}
