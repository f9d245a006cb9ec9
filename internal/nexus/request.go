package nexus

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// opKind is the kind of a child I/O.
type opKind uint8

const (
	opRead opKind = iota
	opWrite
	opFlush
	opUnmap
	opZero
)

// Sub-op states.
const (
	subPending int32 = iota
	subDone
	subAbandoned
)

// subOp is one child's part of a nexus I/O. It lives inside a request.
type subOp struct {
	r     *request
	inst  *instance
	buf   []byte
	err   error
	state atomic.Int32
}

// request is one nexus I/O fanned out to children. Requests are pooled;
// a request with an abandoned (timed-out) sub-op is dropped instead of
// being reused, because the hung worker may still touch it.
type request struct {
	kind      opKind
	off, n    int64
	remaining atomic.Int32
	done      chan struct{} // receives one value when remaining hits 0
	timer     *time.Timer
	subs      []subOp
	bounce    []byte // data buffer handed to children; abandoned with the request on timeout

	// Asynchronous requests (Nexus.StartQueued, async.go); cb is nil for
	// synchronous ones. Set before any sub-op starts.
	nx    *Nexus
	cb    blockdev.IOCompletion
	user  []byte // the caller's buffer
	nh    int    // healthy children at start (settle)
	reuse bool   // may go back to the pool once pend reaches 0 (set by the deliverer)
	// fin is won by whoever delivers the result: the last completion or
	// the timeout.
	fin atomic.Bool
	// pend counts the child IOFlush calls still due, plus one until the
	// result (IODone and IOFlush) has been delivered; at 0 nothing refers
	// to the request any more.
	pend    atomic.Int32
	flushBy atomic.Pointer[subOp] // the sub-op whose IOFlush delivers the caller's
	atimer  *time.Timer           // AfterFunc(onTimeout), created on first asynchronous use
	// q is the per-thread queue the request was started on (queue.go), or
	// nil; overdue is when onTimeout first found it late (UnixNano).
	q       *nexusQueue
	overdue int64
	// rearmed is bumped by onTimeout before it re-arms atimer, after its
	// last use of q and overdue; stopTimer reads it when Stop wins over a
	// re-armed timer. The timer's own lock orders the two at run time, but
	// that lock is the runtime's and gives the race detector (and the
	// memory model) no edge; this atomic does, before r is reused.
	rearmed atomic.Uint32
}

var requestPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &request{done: make(chan struct{}, 1), timer: t, subs: make([]subOp, 0, 4)}
}}

func getRequest(kind opKind, off, n int64) *request {
	r := requestPool.Get().(*request)
	r.kind, r.off, r.n = kind, off, n
	r.subs = r.subs[:0]
	return r
}

func putRequest(r *request) {
	r.nx, r.cb, r.user = nil, nil, nil
	for i := range r.subs {
		r.subs[i] = subOp{}
	}
	r.subs = r.subs[:0]
	requestPool.Put(r)
}

// add appends a sub-op for inst (not yet submitted).
func (r *request) add(inst *instance, buf []byte) {
	r.subs = append(r.subs, subOp{})
	s := &r.subs[len(r.subs)-1]
	s.r, s.inst, s.buf = r, inst, buf
}

// readBuf returns the request's bounce buffer, sized n bytes.
func (r *request) readBuf(n int) []byte {
	if cap(r.bounce) < n {
		r.bounce = blockdev.AlignedBuffer(n) // aligned: children may do direct I/O on it
	}
	return r.bounce[:n]
}

// run submits every sub-op and waits for all of them, at most timeout.
// It reports whether some sub-op was abandoned (timed out); those carry
// blockdev.ErrTimeout and the request must not be reused.
//
// With inline set, the last sub-op runs in the calling goroutine (no
// goroutine handoff: the common single-child read costs no scheduling),
// registered with its instance so the watchdog can fault a child whose
// inline call hangs; the others go to the children's workers.
func (r *request) run(timeout time.Duration, inline bool) (abandoned bool) {
	k := len(r.subs)
	r.remaining.Store(int32(k))
	queued := k
	if inline {
		queued = k - 1
	}
	async := 0
	for i := range queued {
		s := &r.subs[i]
		if s.inst.startAsync(s, s) {
			async++
			continue
		}
		if err := s.inst.submit(s); err != nil {
			s.complete(err)
		}
	}
	if async > 0 {
		for i := range queued {
			if a := r.subs[i].inst.async; a != nil {
				a.Submit()
			}
		}
	}
	if inline {
		// The inline sub-op is never abandoned (this goroutine waits for
		// it), so it may use the caller's buffer. It is watched when a
		// slot is free; with more than inlineSlots concurrent inline I/Os
		// on one child the excess runs unwatched.
		s := &r.subs[k-1]
		in := s.inst
		slot := in.inline.enter()
		in.outstanding.Add(1)
		err := s.exec()
		in.outstanding.Add(-1)
		if slot >= 0 {
			in.inline.exit(slot)
		}
		if k == 1 { // nothing else to wait for
			s.err = err
			s.state.Store(subDone)
			return false
		}
		s.complete(err)
	}
	r.timer.Reset(timeout)
	select {
	case <-r.done:
		r.timer.Stop()
		return false
	case <-r.timer.C:
	}
	for i := range r.subs {
		s := &r.subs[i]
		if s.state.CompareAndSwap(subPending, subAbandoned) {
			abandoned = true
		}
	}
	if !abandoned {
		<-r.done // every sub-op finished just as the timer fired
	}
	return abandoned
}

// complete records a sub-op result unless it was abandoned. err is
// written before the state CAS so a reader that observes subDone sees it.
func (s *subOp) complete(err error) { s.finish(err, false) }

// finish is complete; fromDevice says the result came from an
// asynchronous device, which calls the sub-op's IOFlush next.
func (s *subOp) finish(err error, fromDevice bool) {
	r := s.r
	if s.state.Load() != subPending {
		return
	}
	s.err = err
	if !s.state.CompareAndSwap(subPending, subDone) {
		return
	}
	if r.remaining.Add(-1) == 0 {
		if r.cb != nil {
			r.asyncDone(s, fromDevice)
			return
		}
		r.done <- struct{}{}
	}
}

// result is the sub-op's outcome; call it after run returned.
func (s *subOp) result() error {
	if s.state.Load() == subAbandoned {
		return blockdev.ErrTimeout
	}
	return s.err
}

// exec performs the sub-op on the instance's device.
func (s *subOp) exec() error {
	d, r := s.inst.dev, s.r
	var err error
	switch r.kind {
	case opRead:
		_, err = d.ReadAt(s.buf, r.off)
	case opWrite:
		_, err = d.WriteAt(s.buf, r.off)
	case opFlush:
		err = d.Flush()
	case opUnmap, opZero:
		err = d.WriteZeroes(r.off, r.n)
	}
	return err
}
