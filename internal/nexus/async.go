package nexus

import (
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// The nexus as a blockdev.Async device: an exporter (NBD, NVMe/TCP) starts
// a read or write without blocking, the nexus starts the children's parts
// on their own asynchronous devices, and the last child completion
// delivers the result — no goroutine per request, no worker hand-off.
//
// Only the common case takes this path: the gate open, no rebuild, no
// absent child keeping a dirty log, no write-intent log, and every child
// involved able to run the I/O asynchronously. Everything else returns
// false and the caller uses ReadAt/WriteAt, which handle it all.
//
// A request that fails on a child or times out is finished on its own
// goroutine (faulting a child persists NexusInfo, which may block), with
// the same rules as the synchronous path: a failed write succeeds if a
// still-healthy child took it, a failed read is retried on another child.

var _ blockdev.Async = (*Nexus)(nil)

// asyncSub is a sub-op of an asynchronous request, as the child device's
// completion. A distinct type from subOp so a late IOFlush of a
// synchronous request's sub-op (which must not touch it) is never
// mistaken for one of these.
type asyncSub subOp

// IODone records the child's result.
func (a *asyncSub) IODone(n int, err error) {
	s := (*subOp)(a)
	s.inst.outstanding.Add(-1)
	s.finish(err, true)
}

// IOFlush delivers the caller's IOFlush if this sub-op's completion
// delivered the result, then drops the sub-op's reference.
func (a *asyncSub) IOFlush() {
	s := (*subOp)(a)
	r := s.r
	if r.flushBy.Load() == s {
		r.cb.IOFlush()
		r.release()
	}
	r.release()
}

// StartQueued starts a read or write of the nexus (see blockdev.Async).
func (n *Nexus) StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool {
	return n.startQueued(write, p, off, cb, nil)
}

// startQueued is StartQueued; with q set, only while the healthy children
// are q's, and on their views of q.
func (n *Nexus) startQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion, q *nexusQueue) bool {
	if len(p) == 0 || n.check(off, int64(len(p))) != nil || !n.gate.tryEnter() {
		return false
	}
	r, ok := n.asyncRequest(write, p, off, cb, q)
	if !ok {
		n.gate.exit()
		return false
	}
	k := int32(len(r.subs))
	r.remaining.Store(k)
	r.pend.Store(k + 1)
	if r.atimer == nil {
		r.atimer = time.AfterFunc(time.Hour, r.onTimeout)
	}
	r.q, r.overdue = q, 0
	r.atimer.Reset(n.cfg.ChildTimeout)
	for i := range r.subs {
		s := &r.subs[i]
		if q != nil && s.inst.startAsyncOn(q.view(s.inst), s, (*asyncSub)(s)) || q == nil && s.inst.startAsync(s, (*asyncSub)(s)) {
			continue
		}
		if i == 0 {
			// Nothing started yet: decline, the caller goes synchronous.
			r.fin.Store(true) // a timer that fires anyway finds fin taken
			if r.stopTimer() {
				putRequest(r) // else onTimeout may still read r: drop it
			}
			n.gate.exit()
			return false
		}
		// Another child already has its part: this one goes to its
		// workers (no IOFlush will come from it).
		r.pend.Add(-1)
		if err := s.inst.submit(s); err != nil {
			s.complete(err)
		}
	}
	return true
}

// asyncRequest builds the request for StartQueued (for q's child only, if
// q is set), or reports that the I/O must take the synchronous path.
func (n *Nexus) asyncRequest(write bool, p []byte, off int64, cb blockdev.IOCompletion, q *nexusQueue) (*request, bool) {
	snap := n.snap.Load()
	if n.isBroken.Load() || len(snap.healthy) == 0 || len(snap.rebuilding) > 0 || n.jobs.Load() > 0 {
		return nil, false
	}
	if q != nil && !q.fits(snap) {
		return nil, false
	}
	kind := opRead
	if write {
		if len(snap.logs) > 0 || n.intent != nil {
			return nil, false
		}
		for _, in := range snap.healthy {
			if in.async == nil {
				return nil, false
			}
		}
		kind = opWrite
	}
	var reader *instance
	if !write {
		reader = snap.pickReader(nil, n.readSeq.Add(1))
		if reader == nil || reader.async == nil {
			return nil, false
		}
	}
	r := getRequest(kind, off, int64(len(p)))
	// Children get a pooled aligned copy: a timed-out child may still use
	// it after the caller got its buffer back.
	buf := r.readBuf(len(p))
	if write {
		copy(buf, p)
		for _, in := range snap.healthy {
			r.add(in, buf)
		}
	} else {
		r.add(reader, buf)
	}
	r.nx, r.cb, r.user, r.nh, r.reuse = n, cb, p, len(r.subs), false
	r.fin.Store(false)
	r.flushBy.Store(nil)
	return r, true
}

// asyncDone runs when the last sub-op of an asynchronous request
// completed; s is that sub-op, fromDevice whether its IOFlush follows.
func (r *request) asyncDone(s *subOp, fromDevice bool) {
	if !r.fin.CompareAndSwap(false, true) {
		return // the timeout is delivering
	}
	// A timer that could not be stopped may still run onTimeout: then the
	// request is never reused (onTimeout reads it).
	r.reuse = r.stopTimer()
	for i := range r.subs {
		if r.subs[i].err != nil {
			go r.finishSlow()
			return
		}
	}
	n := r.nx
	if r.kind == opRead {
		copy(r.user, r.subs[0].buf)
	}
	n.gate.exit()
	r.cb.IODone(int(r.n), nil)
	if fromDevice {
		r.flushBy.Store(s) // s's IOFlush delivers the caller's
		return
	}
	r.cb.IOFlush()
	r.release()
}

// stopTimer stops atimer and reports whether it did before onTimeout
// ran for good: then r may be reused, and everything an earlier,
// re-arming onTimeout did to r happened before (rearmed).
func (r *request) stopTimer() bool {
	if !r.atimer.Stop() {
		return false
	}
	r.rearmed.Load()
	return true
}

// onTimeout abandons the sub-ops still pending and finishes the request.
// It runs on the timer's goroutine (and alone touches r.overdue).
func (r *request) onTimeout() {
	if r.q != nil && !r.fin.Load() && !r.q.late(&r.overdue) {
		// Started on a queue whose owner has not waited on it since the
		// deadline: its completion may be posted only when the owner
		// next waits, so the child is not known to be late. Look again.
		r.rearmed.Add(1)
		r.atimer.Reset(queueGrace)
		return
	}
	if !r.fin.CompareAndSwap(false, true) {
		return
	}
	for i := range r.subs {
		r.subs[i].state.CompareAndSwap(subPending, subAbandoned)
	}
	r.finishSlow() // r.reuse stays false: abandoned sub-ops may still use r
}

// finishSlow handles failed or timed-out children like the synchronous
// path, then delivers the result. Not on a device's completion goroutine.
func (r *request) finishSlow() {
	n := r.nx
	var err error
	if r.kind == opRead {
		s := &r.subs[0]
		if e := s.result(); e == nil {
			copy(r.user, s.buf)
		} else if ferr := n.childFailed(s.inst, e, nil); ferr != nil {
			err = ferr
		} else {
			_, err = n.readHealthy(r.user, r.off)
		}
	} else if ok, e := n.settle(r, r.nh, r.off, r.n, true); !ok {
		err = e
	}
	n.gate.exit()
	done := int(r.n)
	if err != nil {
		done = 0
	}
	cb := r.cb
	cb.IODone(done, err)
	cb.IOFlush()
	r.release()
}

// release drops one reference (see pend); the last returns the request to
// the pool when it may be reused.
func (r *request) release() {
	if r.pend.Add(-1) == 0 && r.reuse {
		putRequest(r)
	}
}

// Submit submits the children's queued asynchronous I/O.
func (n *Nexus) Submit() {
	for _, in := range n.snap.Load().healthy {
		if in.async != nil {
			in.async.Submit()
		}
	}
}
