package nexus

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// Per-thread queues (blockdev.QueueOpener) for a nexus with one healthy
// child, the common layout of a volume on one node: an exporter's
// connection in ring mode (nbd, nvmetcp) then waits for its socket and
// its child's I/O in one io_uring_enter, as it does on a bare replica.
// The request machinery is StartQueued's (gate, timeout, fault handling),
// with the child's part started on the child's queue.
//
// With more children a thread cannot wait for all their rings in one
// place, so OpenQueue declines (ErrNotSupported). When the layout changes
// while a queue is open (a child added, a rebuild, a fault), the queue's
// StartQueued declines and the caller takes the synchronous path.

var _ blockdev.QueueOpener = (*Nexus)(nil)

// nexusQueue is a Queue over the queue of the nexus's one healthy child.
// It belongs to the goroutine that opened it (see blockdev.Queue).
type nexusQueue struct {
	n  *Nexus
	in *instance      // the child instance the queue was opened on
	cq blockdev.Queue // its device's queue

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
	if len(snap.healthy) != 1 || len(snap.rebuilding) > 0 {
		return nil, fmt.Errorf("%w: nexus %s has %d healthy and %d rebuilding children (queues need exactly one)",
			blockdev.ErrNotSupported, n.cfg.Name, len(snap.healthy), len(snap.rebuilding))
	}
	in := snap.healthy[0]
	qo, ok := in.dev.(blockdev.QueueOpener)
	if !ok {
		return nil, fmt.Errorf("%w: nexus %s: child device %T has no queues", blockdev.ErrNotSupported, n.cfg.Name, in.dev)
	}
	cq, err := qo.OpenQueue()
	if err != nil {
		return nil, fmt.Errorf("nexus %s: child queue: %w", n.cfg.Name, err)
	}
	return &nexusQueue{n: n, in: in, cq: cq}, nil
}

// StartQueued starts a read or write of the nexus on the child's queue
// (see blockdev.Async); false when the nexus is no longer in the queue's
// layout or the request needs the synchronous path.
func (q *nexusQueue) StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool {
	return q.n.startQueued(write, p, off, cb, q)
}

// Submit hands the started operations to the kernel.
func (q *nexusQueue) Submit() { q.cq.Submit() }

// Wait waits on the child's queue (see blockdev.Queue).
func (q *nexusQueue) Wait(fd int) (bool, error) {
	q.waitSince.Store(time.Now().UnixNano())
	ready, err := q.cq.Wait(fd)
	q.lastReap.Store(time.Now().UnixNano())
	q.waitSince.Store(0)
	return ready, err
}

// Inflight counts the child operations in flight: one per request.
func (q *nexusQueue) Inflight() int { return q.cq.Inflight() }

// Close waits for the operations in flight and closes the child's queue.
func (q *nexusQueue) Close() error {
	q.waitSince.Store(time.Now().UnixNano())
	err := q.cq.Close()
	q.lastReap.Store(time.Now().UnixNano())
	q.waitSince.Store(0)
	return err
}
