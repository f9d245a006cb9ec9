package nexus

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// Per-thread queues (blockdev.QueueOpener) for a nexus whose children
// are all healthy and offer them: an exporter's connection in ring mode
// (nbd, nvmetcp) then waits for its socket and its children's I/O in one
// io_uring_enter, as it does on a bare replica. The first child opens the
// queue and the others join its ring (blockdev.QueueJoiner), so one
// thread waits for all of them in one place. The request machinery is
// StartQueued's (gate, timeout, fault handling), with each child's part
// started on its view of the queue.
//
// When the layout changes while a queue is open (a child added, a
// rebuild, a fault), the queue declines I/O and the caller takes the
// synchronous path.

var _ blockdev.QueueOpener = (*Nexus)(nil)

// nexusQueue is a Queue over one ring that all the nexus's healthy
// children use. It belongs to the goroutine that opened it (see
// blockdev.Queue).
type nexusQueue struct {
	n    *Nexus
	ins  []*instance      // the healthy children at open, in snapshot order
	cqs  []blockdev.Queue // their views of the ring; cqs[0] opened it
	base blockdev.Queue   // cqs[0]

	// A Queue's completions are posted only while its owner waits
	// (DEFER_TASKRUN): an owner busy elsewhere (blocked writing to a
	// client that does not read) must not make a healthy child look
	// hung. waitSince is when the owner's current Wait or Close began (0:
	// not waiting), lastReap when its last one ended (UnixNano); the
	// request timeout reads them (late).
	waitSince atomic.Int64
	lastReap  atomic.Int64
}

// queueGrace is how often a late request on a queue is looked at again
// while the queue's owner has not waited since it became late;
// settleWait is how long the owner must have been waiting for its pending
// completions to count as posted.
const (
	queueGrace = time.Second
	settleWait = 10 * time.Millisecond
)

// late reports whether a request on the queue that passed its deadline
// is late indeed, rather than waiting for its owner to reap it: the owner
// has been waiting on the queue for a while (every completion posted
// meanwhile has been reported) or has waited since the request was first
// found late. Otherwise the first call records when that was (*overdue,
// the request's, timer goroutine only); it reports false.
func (q *nexusQueue) late(overdue *int64) bool {
	now := time.Now().UnixNano()
	if ws := q.waitSince.Load(); ws != 0 && now-ws > int64(settleWait) {
		return true
	}
	if *overdue == 0 {
		*overdue = now
		return false
	}
	return q.lastReap.Load() > *overdue
}

// OpenQueue returns a Queue for the calling goroutine, which must be
// locked to its OS thread, when the nexus has exactly one healthy child,
// nothing rebuilding, and the child's device offers queues; otherwise
// blockdev.ErrNotSupported.
func (n *Nexus) OpenQueue() (blockdev.Queue, error) {
	snap := n.snap.Load()
	if len(snap.healthy) == 0 || len(snap.rebuilding) > 0 {
		return nil, fmt.Errorf("%w: nexus %s has %d healthy and %d rebuilding children",
			blockdev.ErrNotSupported, n.cfg.Name, len(snap.healthy), len(snap.rebuilding))
	}
	first := snap.healthy[0]
	qo, ok := first.dev.(blockdev.QueueOpener)
	if !ok {
		return nil, fmt.Errorf("%w: nexus %s: child device %T has no queues", blockdev.ErrNotSupported, n.cfg.Name, first.dev)
	}
	base, err := qo.OpenQueue()
	if err != nil {
		return nil, fmt.Errorf("nexus %s: child queue: %w", n.cfg.Name, err)
	}
	q := &nexusQueue{n: n, ins: append([]*instance(nil), snap.healthy...), base: base}
	q.cqs = append(q.cqs, base)
	for _, in := range snap.healthy[1:] {
		qj, ok := in.dev.(blockdev.QueueJoiner)
		var v blockdev.Queue
		if ok {
			v, err = qj.JoinQueue(base)
		}
		if !ok || err != nil {
			base.Close()
			return nil, fmt.Errorf("%w: nexus %s: child device %T cannot share its queue (%v)", blockdev.ErrNotSupported, n.cfg.Name, in.dev, err)
		}
		q.cqs = append(q.cqs, v)
	}
	return q, nil
}

// fits reports whether snap's healthy children are the queue's.
func (q *nexusQueue) fits(snap *snapshot) bool {
	if len(snap.healthy) != len(q.ins) {
		return false
	}
	for i, in := range snap.healthy {
		if in != q.ins[i] {
			return false
		}
	}
	return true
}

// view returns in's view of the queue (in is one of q.ins).
func (q *nexusQueue) view(in *instance) blockdev.Queue {
	for i, x := range q.ins {
		if x == in {
			return q.cqs[i]
		}
	}
	return nil
}

// StartQueued starts a read or write of the nexus on the children's views
// of the queue (see blockdev.Async); false when the nexus is no longer in
// the queue's layout or the request needs the synchronous path.
func (q *nexusQueue) StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool {
	return q.n.startQueued(write, p, off, cb, q)
}

// Submit hands the started operations to the kernel.
func (q *nexusQueue) Submit() { q.base.Submit() }

// Wait waits on the ring (see blockdev.Queue).
func (q *nexusQueue) Wait(fd int) (bool, error) {
	q.waitSince.Store(time.Now().UnixNano())
	ready, err := q.base.Wait(fd)
	q.lastReap.Store(time.Now().UnixNano())
	q.waitSince.Store(0)
	return ready, err
}

// Inflight counts the child operations in flight (a write has one per
// child).
func (q *nexusQueue) Inflight() int { return q.base.Inflight() }

// Close waits for the operations in flight and closes the ring.
func (q *nexusQueue) Close() error {
	q.waitSince.Store(time.Now().UnixNano())
	err := q.base.Close()
	q.lastReap.Store(time.Now().UnixNano())
	q.waitSince.Store(0)
	return err
}
