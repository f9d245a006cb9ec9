package nbd

import (
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/rawsock"
)

// Ring mode. On a device that offers per-thread queues
// (blockdev.QueueOpener: uring://, pool replicas on one), a reader whose
// client pipelines (conn.pipelining) locks its
// goroutine to its OS thread, opens a Queue, and takes the socket out of
// the netpoller (raw mode, sock.go). It then starts every plain READ and
// WRITE on the queue and waits for the socket and for that I/O in one
// io_uring_enter (Queue.Wait): a disk completion is posted to the thread
// that submitted it, which is the one waiting, and the reply is written
// there (replyDirect). On the device's shared ring the same completion
// costs two more thread wake-ups (the submitter's task work, then the
// reaper). Measured: docs/nbd.md, Ring mode.
//
// A client at queue depth 1 is better served by the netpoller and inline
// execution (one blocking wait per request instead of two): when the
// evidence of pipelining falls (below half of pipeLimit) with nothing in
// flight, or the connection idles for rawIdleMs, the reader drains and
// closes the queue, unlocks its thread and puts the socket back.
//
// Everything else is unchanged: other requests run inline or on workers,
// replies the reader cannot write without blocking go to the replier, and
// shutdown and abort wake the reader with shutdown(2), which fires the
// queue's poll (or ends its poll(2)).

// ringWanted reports whether the reader should enter ring mode now
// (reader only).
func (c *conn) ringWanted() bool {
	if c.qo == nil || !c.pipelining(pipeLimit) || c.srv.cfg.NoQueues || !c.sock.socket {
		return false
	}
	return c.ringRetry.IsZero() || time.Now().After(c.ringRetry)
}

// ringRetryDelay: a device that could not open a queue (a nexus while a
// child rebuilds, a replica on a pool without io_uring) is asked again
// after this long.
const ringRetryDelay = 5 * time.Second

// pipelining reports whether the client keeps several requests in flight:
// pipelined at or above level, or on average two or more requests per
// socket read (a fast device answers inline, so nothing is in flight when
// the next request arrives, but the requests still come in batches).
func (c *conn) pipelining(level int64) bool {
	return c.pipelined >= level || c.perFill >= 2*perFillScale
}

// openRing enters ring mode (reader only). It does nothing while a writer
// holds wmu (the socket cannot change modes then; a later read tries
// again); a device that cannot open a queue is asked again after
// ringRetryDelay.
func (c *conn) openRing() {
	if !c.sock.raw {
		c.enterRaw()
		if !c.sock.raw {
			return
		}
	}
	q, err := blockdev.OpenThreadQueue(c.qo)
	if err != nil {
		c.log.Debug("nbd: no per-thread I/O queue", "err", err)
		c.ringRetry = time.Now().Add(ringRetryDelay)
		return
	}
	c.ringRetry = time.Time{}
	c.submitQueued() // I/O queued on the shared ring goes out first
	c.q, c.async = q, q
	c.ringOn.Store(true)
	c.srv.ringConns.Add(1)
	c.srv.ringEnters.Add(1)
}

// closeRing reports the queue's I/O still in flight, closes it and
// unlocks the thread (reader only). The socket stays raw: the caller
// decides.
func (c *conn) closeRing() {
	if c.q == nil {
		return
	}
	if err := blockdev.CloseThreadQueue(c.q); err != nil {
		c.log.Error("nbd: closing the connection's I/O queue", "err", err)
	}
	c.q, c.async = nil, c.devAsync
	c.ringOn.Store(false)
	c.srv.ringConns.Add(-1)
}

// nextFree returns a free slot, waiting for one. In ring mode the slots of
// asynchronous requests come back only while the reader waits on the
// queue.
func (c *conn) nextFree() *request {
	for c.q != nil && c.q.Inflight() > 0 {
		select {
		case r := <-c.free:
			return r
		default:
		}
		if !c.waitQueue() {
			break
		}
	}
	return <-c.free
}

// waitQueue waits for the queue's next completions and reports them
// (ring mode); false when the queue failed (logged).
func (c *conn) waitQueue() bool {
	if _, err := c.q.Wait(-1); err != nil {
		c.log.Error("nbd: waiting for the connection's I/O", "err", err)
		return false
	}
	return true
}

// acquireBudget takes n bytes of the connection's budget, waiting for
// them. In ring mode the bytes of asynchronous requests come back only
// while the reader waits on the queue, so it waits there.
func (c *conn) acquireBudget(n int64) {
	for c.q != nil && c.q.Inflight() > 0 {
		if c.budget.tryAcquire(n) {
			return
		}
		if !c.waitQueue() {
			break
		}
	}
	c.budget.acquire(n)
}

// readRing reads into b in ring mode, waiting on the queue (which also
// reports completions) while the socket has nothing. It leaves ring mode,
// and returns ok=false for the caller to read another way, when the client
// stopped pipelining or idled for rawIdleMs.
func (c *conn) readRing(b []byte) (n int, ok bool, err error) {
	s := &c.sock
	for {
		n, again, err := rawsock.Read(s.fd, b)
		switch {
		case !again:
			return n, true, err
		case c.q.Inflight() == 0:
			if !c.pipelining(pipeLimit / 2) {
				c.closeRing()
				c.leaveRaw() // or later, from pollReader, if a writer holds wmu
				return 0, false, nil
			}
			// Nothing of the queue's to report: poll(2) bounds the idle
			// wait.
			ready, perr := rawsock.WaitReadable(s.fd, int(c.srv.rawIdleMs.Load()), &s.rfds)
			if !ready && perr == nil {
				c.closeRing()
				c.leaveRaw()
				return 0, false, nil
			}
		default:
			// Read, or decide above how to wait.
			if err := blockdev.WaitFd(c.q, s.fd); err != nil {
				return 0, true, err
			}
		}
	}
}

// queueOpener returns dev's per-thread queue support, or nil.
func queueOpener(dev blockdev.Device) blockdev.QueueOpener {
	qo, _ := dev.(blockdev.QueueOpener)
	return qo
}
