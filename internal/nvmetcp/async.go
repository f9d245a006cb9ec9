package nvmetcp

import (
	"runtime/debug"
	"sync"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// asyncIO is an I/O queue's asynchronous data path, used when the
// namespace's device implements blockdev.Async. The reader starts plain
// reads and writes with StartQueued and goes straight back to the socket;
// it calls Submit before it could block (deadlineReader.Read, inline
// execution, R2T), so the commands that arrived together reach the device
// together. The device's reaping goroutine reports each completion to the
// slot (IODone, IOFlush) and answers the batch itself with one
// non-blocking socket write when the queue's writer is free (direct.go);
// otherwise, and for what that write leaves, the queue's completer
// goroutine answers with one (blocking) socket write. No worker goroutine
// is involved.
//
// Ownership: dev, probed, queued and running belong to the reader. The
// completer is started by the reader on first use and stopped by the
// reader's teardown (stop), after every started operation has reported.
type asyncIO struct {
	dev     blockdev.Async // where operations start: shared, or the ring mode queue (ring.go)
	shared  blockdev.Async // the namespace's device, if it is Async (after probe)
	probed  bool
	queued  bool // operations started but not yet submitted
	running bool // the completer goroutine runs
	broken  bool // the device panicked in StartQueued: use the synchronous path

	mu      sync.Mutex // guards doneQ (taken after out.mu, never before)
	doneQ   []*slot    // finished operations not yet taken by the completer or completeDirect
	doneBuf []*slot    // the completer's half of the double buffer
	wake    chan struct{}
	end     chan struct{}  // closed when the completer has exited
	wg      sync.WaitGroup // started operations whose IOFlush has not run
}

// fuaBit is the Force Unit Access bit of Read/Write CDW12.
const fuaBit = 1 << 30

// startAsync starts s (an I/O queue command whose data has arrived) on the
// device without waiting, when it is a plain Read or Write that passes the
// checks execIO makes (NSID, ANA state, LBA range, reservation, transfer
// length) and the device accepts it. It returns false when s must take the
// synchronous path, which then also produces the status of a failed check.
// Reader only; inflight is already counted for s.
func (q *queue) startAsync(s *slot) bool {
	sq := &s.sqe
	if sq.Opcode != nvme.IORead && sq.Opcode != nvme.IOWrite || sq.CDW12&fuaBit != 0 || sq.NSID != 1 {
		return false
	}
	a := &q.as
	a.probe(q)
	if a.dev == nil || a.broken {
		return false
	}
	c := q.ctrl
	sub := c.s
	if sub.anaStatus() != nvme.StatusSuccess {
		return false
	}
	slba, nlb := sq.SLBA(), uint64(sq.NLB())
	if slba >= sub.nsze || nlb > sub.nsze-slba || s.xfer != uint32(nlb<<sub.lbaShift) || len(s.buf) != int(s.xfer) {
		return false
	}
	write := sq.Opcode == nvme.IOWrite
	if !sub.resv.allowed(c.hostID, write) {
		return false
	}
	if !a.running {
		a.start(len(q.slots))
		go q.completer()
	}
	a.wg.Add(1)
	if !q.tryStart(write, s, int64(slba<<sub.lbaShift)) {
		a.wg.Done()
		return false
	}
	a.queued = true
	return true
}

// tryStart calls the device's StartQueued. A panic in the device is
// contained like one on the synchronous path: it is logged, the queue stops
// using the asynchronous path, and the command is refused, so the
// synchronous path executes it (under exec's recover, which fails it with
// Internal Error if the device panics again). A device that panics is
// assumed not to have started the operation.
func (q *queue) tryStart(write bool, s *slot, off int64) (started bool) {
	defer func() {
		if r := recover(); r != nil {
			q.t.log.Error("panic in device StartQueued; queue falls back to synchronous I/O",
				"opcode", s.sqe.Opcode, "qid", q.qid, "panic", r, "stack", string(debug.Stack()))
			q.as.broken, started = true, false
		}
	}()
	return q.as.dev.StartQueued(write, s.buf, off, s)
}

// probe looks once at what the namespace's device offers (reader only,
// connected I/O queue).
func (a *asyncIO) probe(q *queue) {
	if a.probed {
		return
	}
	a.probed = true
	dev := q.ctrl.s.dev
	a.shared, _ = dev.(blockdev.Async)
	a.dev = a.shared
	q.qo = queueOpener(dev)
}

// start prepares the completion lists for n slots. Reader only.
func (a *asyncIO) start(n int) {
	a.running = true
	a.doneQ = make([]*slot, 0, n)
	a.doneBuf = make([]*slot, 0, n)
	a.wake = make(chan struct{}, 1)
	a.end = make(chan struct{})
}

// submit hands the operations the reader started to the device. Reader
// only; called before anything that may block.
func (a *asyncIO) submit() {
	if a.queued {
		a.queued = false
		a.dev.Submit()
	}
}

// stop waits until every started operation has reported, then stops the
// completer once it has answered them. Called by the reader's teardown:
// afterwards no device I/O uses the queue's slots or buffers.
func (a *asyncIO) stop() {
	a.submit()
	a.wg.Wait()
	if a.running {
		a.running = false
		close(a.wake) // every IOFlush has run: nothing sends any more
		<-a.end
	}
}

// IODone records the result of s's asynchronous Read or Write
// (blockdev.IOCompletion). It runs on the device's reaping goroutine, so it
// only queues s for IOFlush or the completer: a host that stops reading
// must not stall the device for its other users.
func (s *slot) IODone(n int, err error) {
	switch {
	case err != nil:
		s.status = ioStatus(err, s.sqe.Opcode == nvme.IOWrite)
	case s.sqe.Opcode == nvme.IORead:
		s.c2h = s.xfer
	}
	a := &s.q.as
	a.mu.Lock()
	a.doneQ = append(a.doneQ, s) // within capacity: one entry per slot at most
	a.mu.Unlock()
}

// IOFlush answers the batch of completions the device has delivered
// (blockdev.IOCompletion): on the reaping goroutine with one non-blocking
// write when it can (completeDirect), otherwise by waking the completer.
// s may already be reused by then; only its queue is used.
func (s *slot) IOFlush() {
	q := s.q
	if !q.completeDirect() {
		q.as.wakeCompleter()
	}
	q.as.wg.Done()
}

// wakeCompleter makes the completer run once more. Only while an IOFlush
// runs (a.wg counts it), so wake is open.
func (a *asyncIO) wakeCompleter() {
	select {
	case a.wake <- struct{}{}:
	default: // a wake-up is pending
	}
}

// completer answers finished asynchronous commands in batches until stop
// closes wake. It also sends what a direct write left pending, and starts
// commands deferred for buffers that a direct write's release freed.
func (q *queue) completer() {
	a := &q.as
	defer close(a.end)
	for range a.wake {
		q.drainPending()
		for {
			a.mu.Lock()
			batch := a.doneQ
			a.doneQ, a.doneBuf = a.doneBuf[:0], batch
			a.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			q.completeBatch(batch)
		}
		if q.ndeferred.Load() > 0 {
			q.kick()
		}
	}
}

// drainPending sends the tail a direct write left, blocking if it must.
func (q *queue) drainPending() {
	q.out.mu.Lock()
	if len(q.out.pending) > 0 {
		q.flushLocked()
	}
	q.out.mu.Unlock()
}

// completeBatch sends the data and responses of finished commands with one
// flush, then frees their slots.
func (q *queue) completeBatch(batch []*slot) {
	q.out.mu.Lock()
	for _, s := range batch {
		q.writeCompletion(s)
	}
	q.flushLocked()
	q.out.mu.Unlock()
	for i, s := range batch {
		batch[i] = nil
		q.release(s)
		q.inflight.Add(-1)
	}
}
