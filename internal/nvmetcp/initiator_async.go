package nvmetcp

import (
	"fmt"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// The initiator as a blockdev.Async device. StartQueued encodes the
// command into the queue's batch writer without flushing; Submit flushes
// every queue with commands waiting, so the commands started together
// leave in one write. A queue's read loop completes them: it frees the
// command slot, calls IODone (which may start the next command at once)
// and, when no further PDU is buffered, IOFlush for the batch. No
// goroutine is woken per I/O.
//
// Asynchronous commands are not retried on a new connection: a command
// whose connection fails completes with ErrIO (or ErrClosed after Close),
// and one that cannot start (connection down, reconnecting, every slot
// busy, too large) is refused, so the caller takes the synchronous path,
// which waits for the reconnect.

var _ blockdev.Async = (*Device)(nil)

// maxFlushBatch bounds how many completions wait for IOFlush while more
// PDUs are buffered.
const maxFlushBatch = 64

// StartQueued starts a read (write=false) or write of p at off (see
// blockdev.Async). p must not be touched until cb.IODone.
func (d *Device) StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool {
	if len(p) == 0 || int64(len(p)) > d.maxXfer.Load() || blockdev.CheckRange(off, int64(len(p)), d.bs, d.size) != nil {
		return false
	}
	d.mu.Lock()
	closed, ready, ioqs := d.closed, d.ready, d.ioqs
	d.mu.Unlock()
	if closed || len(ioqs) == 0 {
		return false
	}
	select {
	case <-ready:
	default:
		return false // reconnecting
	}
	q := ioqs[int(d.rr.Add(1))%len(ioqs)]
	if q.dead.Load() {
		return false
	}
	var cid uint16
	select {
	case cid = <-q.free:
	default:
		return false
	}
	r := &q.reqs[cid]
	op := nvme.IORead
	if write {
		op = nvme.IOWrite
	}
	r.sqe = nvme.SQE{Opcode: op, CID: cid, NSID: d.nsid}
	r.sqe.SetLBA(uint64(off)/uint64(d.bs), uint32(len(p)/d.bs))
	q.attach(r, p, write)
	r.cb = cb
	r.sent.Store(q.clock.Load())
	r.inflight.Store(true)
	if q.dead.Load() {
		// The read loop may already be failing in-flight commands: if it
		// took this one, it reports it; otherwise take it back.
		if !r.inflight.CompareAndSwap(true, false) {
			return true
		}
		r.data, r.cb = nil, nil
		q.free <- cid
		return false
	}
	q.out.mu.Lock()
	err := q.encode(r)
	q.out.mu.Unlock()
	if err != nil {
		q.fail(err) // the read loop ends and fails the command
	}
	return true
}

// Submit sends every command started with StartQueued.
func (d *Device) Submit() {
	d.mu.Lock()
	ioqs := d.ioqs
	d.mu.Unlock()
	for _, q := range ioqs {
		q.out.mu.Lock()
		var err error
		if q.out.Buffered() > 0 {
			err = q.enc.Flush()
		}
		q.out.mu.Unlock()
		if err != nil {
			q.fail(err)
		}
	}
}

// finishAsync completes asynchronous command r (its inflight flag already
// cleared) on the read loop: the slot is freed before IODone so the
// callback can start the next command, and the IOFlush is queued for
// deliverFlush.
func (q *hqueue) finishAsync(r *hreq, cqe nvme.CQE, err error) {
	cb, p := r.cb, r.data
	r.cb, r.data = nil, nil
	switch {
	case err != nil:
		err = lostErr(err)
		if q.closing.Load() {
			err = fmt.Errorf("%w: %w", blockdev.ErrClosed, err)
		}
	case !cqe.Status.OK():
		err = statusErr(cqe.Status)
	case !r.write && r.recvd != len(p):
		err = fmt.Errorf("%w: nvmetcp: short read: %d of %d bytes", blockdev.ErrIO, r.recvd, len(p))
	}
	n := len(p)
	if err != nil {
		n = 0
	}
	q.free <- r.sqe.CID // capacity = slots: never blocks
	cb.IODone(n, err)
	q.flushq = append(q.flushq, cb)
}

// deliverFlush calls IOFlush for every completion reported since the last
// call (read loop only).
func (q *hqueue) deliverFlush() {
	for i, cb := range q.flushq {
		q.flushq[i] = nil
		cb.IOFlush()
	}
	q.flushq = q.flushq[:0]
}
