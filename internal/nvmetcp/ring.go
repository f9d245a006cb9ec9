package nvmetcp

import (
	"os"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/rawsock"
)

// Ring mode (as in the NBD server, docs/nbd.md). On a namespace whose
// device offers per-thread queues (blockdev.QueueOpener: uring://, pool
// replicas on one), the reader of an I/O queue whose host pipelines
// (inlineState.pipelined at or above pipeLimit) locks its goroutine to its
// OS thread, takes the socket out of the netpoller (raw mode, sock.go) and
// opens a blockdev.Queue. Plain reads and writes then start on that queue
// (startAsync), and the reader waits for its socket and for that I/O in
// one io_uring_enter (Queue.Wait). A disk completion is posted to the
// thread that submitted it, which is the one waiting; its IOFlush answers
// the batch with the direct write (direct.go) right there. On the device's
// shared ring the same completion costs two more thread wake-ups (the
// submitter's task work, then the reaper).
//
// A host at queue depth 1 is better served by the netpoller and inline
// execution: when the evidence of pipelining falls below half of
// pipeLimit with nothing in flight on the queue, or nothing arrives for
// ringIdle (mid-PDU too: the netpoller's read deadline then bounds the
// stall, pduTimeout), the reader closes the queue, unlocks its thread and
// puts the socket back. Everything else (inline execution, workers, the
// completer, deferred commands) is unchanged.
//
// A device that cannot open a queue (a nexus while a child rebuilds, a
// replica on a pool without io_uring) is asked again after
// ringRetryDelay.
const (
	ringIdle       = 50 * time.Millisecond
	ringRetryDelay = 5 * time.Second
)

// ringWanted reports whether the reader should enter ring mode now
// (reader only).
func (q *queue) ringWanted() bool {
	if q.qid == 0 || !q.connected || q.t.cfg.NoQueues || !q.sock.socket || q.il.pipelined < pipeLimit {
		return false
	}
	if !q.ringRetry.IsZero() && time.Now().Before(q.ringRetry) {
		return false
	}
	q.as.probe(q)
	return q.qo != nil && q.as.shared != nil && !q.as.broken
}

// openRing enters ring mode (reader only). It does nothing while a writer
// owns the socket (a later read tries again); a device that cannot open a
// queue is asked again after the target's ringRetryDelay.
func (q *queue) openRing() {
	if !q.sock.raw {
		q.enterRaw()
		if !q.sock.raw {
			return
		}
	}
	rq, err := blockdev.OpenThreadQueue(q.qo)
	if err != nil {
		q.t.log.Debug("nvmetcp: no per-thread I/O queue", "qid", q.qid, "err", err)
		q.ringRetry = time.Now().Add(q.t.ringRetryDelay)
		q.leaveRaw()
		return
	}
	q.ringRetry = time.Time{}
	q.as.submit() // what was started on the shared ring goes out first
	q.rq, q.as.dev = rq, rq
	q.ringOn.Store(true)
	q.t.ringConns.Add(1)
	q.t.ringEnters.Add(1)
}

// closeRing reports the queue's I/O still in flight, closes it and
// unlocks the thread (reader only). The socket stays raw: the caller
// decides.
func (q *queue) closeRing() {
	if q.rq == nil {
		return
	}
	if err := blockdev.CloseThreadQueue(q.rq); err != nil {
		q.t.log.Error("nvmetcp: closing the queue's I/O ring", "qid", q.qid, "err", err)
	}
	q.rq, q.as.dev, q.as.queued = nil, q.as.shared, false
	q.ringOn.Store(false)
	q.t.ringConns.Add(-1)
}

// readRing reads into b in ring mode, waiting on the queue (which also
// reports completions) while the socket has nothing. It leaves ring mode,
// and returns ok=false for the caller to read another way, when the host
// stopped pipelining or sent nothing for ringIdle.
func (q *queue) readRing(b []byte) (n int, ok bool, err error) {
	s := &q.sock
	for {
		n, again, err := rawsock.Read(s.fd, b)
		switch {
		case !again:
			return n, true, err
		case q.rq.Inflight() == 0:
			if q.il.pipelined >= pipeLimit/2 {
				// Nothing of the queue's to report: poll(2) bounds the
				// idle wait.
				ready, perr := waitReadable(s, ringIdle)
				if perr != nil {
					return 0, true, perr
				}
				if ready {
					continue
				}
			}
			q.closeRing()
			q.leaveRaw() // or later, from readRaw, if a writer owns the socket
			return 0, false, nil
		default:
			// Read, or decide above how to wait.
			if err := blockdev.WaitFd(q.rq, s.fd); err != nil {
				return 0, true, err
			}
		}
	}
}

// readRaw reads into b while the socket is raw outside ring mode (the
// reader could not give it back yet). Every ringIdle without data it tries
// again; it returns ok=false once the socket is back in the netpoller.
// Mid-PDU (idle false) the host has pduTimeout to go on.
func (q *queue) readRaw(b []byte, idle bool) (n int, ok bool, err error) {
	s := &q.sock
	start := time.Now()
	for {
		n, again, err := rawsock.Read(s.fd, b)
		if !again {
			return n, true, err
		}
		ready, err := waitReadable(s, ringIdle)
		switch {
		case err != nil:
			return 0, true, err
		case ready:
		case !idle && time.Since(start) > pduTimeout:
			return 0, true, os.ErrDeadlineExceeded
		default:
			if q.leaveRaw(); !s.raw {
				return 0, false, nil
			}
		}
	}
}

func waitReadable(s *qsock, d time.Duration) (bool, error) {
	return rawsock.WaitReadable(s.fd, int(d/time.Millisecond), &s.rfds)
}

// queueOpener returns dev's per-thread queue support, or nil.
func queueOpener(dev blockdev.Device) blockdev.QueueOpener {
	qo, _ := dev.(blockdev.QueueOpener)
	return qo
}
