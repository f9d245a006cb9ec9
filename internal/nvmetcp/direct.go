package nvmetcp

import (
	"fmt"
	"syscall"

	"github.com/kura-io/kura/internal/rawsock"
)

// directBufSize bounds the PDUs one direct write carries; completions with
// largeData bytes or more take the direct path in ring mode only.
const directBufSize = 512 << 10

// maxCompletionPDUs is the most a completion adds to its data: the
// C2HData and response capsule headers, each with a header digest, and
// the data digest.
const maxCompletionPDUs = 2*(hlenData+digestLen) + digestLen

// directWriter writes the responses of a batch of asynchronous completions
// on the device's reaping goroutine, without blocking. Everything but s
// and writeFn (set once by newQueue) is guarded by the queue's out.mu.
type directWriter struct {
	s     *qsock  // no direct path when it is not a socket
	buf   []byte  // encoded PDUs of one batch (allocated on first use)
	batch []*slot // the batch taken from asyncIO.doneQ (capacity: the slot count)

	// Arguments and results of writeFn.
	wb      []byte
	n       int
	err     error
	writeFn func(fd uintptr) bool
}

func (d *directWriter) init(s *qsock) {
	d.s = s
	d.writeFn = d.write
}

// write is the RawConn callback: it writes as much of wb as the socket
// takes now and never asks to wait.
func (d *directWriter) write(fd uintptr) bool {
	for d.n < len(d.wb) {
		// syscall.Write, not unix.Write: it releases the race detector's
		// happens-before edge that readers of the socket acquire.
		m, err := syscall.Write(int(fd), d.wb[d.n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return true
		case err != nil:
			d.err = err
			return true
		}
		d.n += m
	}
	return true
}

// writeNow writes what the socket takes of b without blocking and returns
// how much that was.
func (d *directWriter) writeNow(b []byte) (int, error) {
	if d.s.raw {
		n, err := rawsock.WriteSome(d.s.fd, b)
		if err != nil {
			return n, fmt.Errorf("nvmetcp: direct completion write: %w", err)
		}
		return n, nil
	}
	d.wb, d.n, d.err = b, 0, nil
	raceSync()
	err := d.s.rc.Write(d.writeFn)
	d.wb = nil
	if err == nil {
		err = d.err
	}
	if err != nil {
		return d.n, fmt.Errorf("nvmetcp: direct completion write: %w", err)
	}
	return d.n, nil
}

// completeDirect answers the queue's finished asynchronous commands on the
// goroutine that reports them (the device's reaper), which saves waking
// the completer. It never blocks: when the writer is busy (locked,
// flushing, holding buffered bytes or a pending tail) or has failed, it
// returns false and the completer does the work. Completions that do not
// fit the buffer go back to the completer, and what the socket does not
// take now becomes the writer's pending tail, which the completer (or any
// other writer, first) sends. A host that stops reading therefore never
// stalls the device. It returns true when the batch is handled.
func (q *queue) completeDirect() bool {
	d := &q.dw
	if !d.s.socket || !q.out.mu.TryLock() {
		return false
	}
	// Bytes buffered, being written or pending were encoded earlier (a
	// pending tail even ends a PDU already partly on the wire, and SQ
	// heads must not go backwards): nothing may overtake them.
	if q.werr != nil || !q.out.idle() {
		q.out.mu.Unlock()
		return false
	}
	if d.buf == nil { // once per queue; the slot count is final by now
		d.buf = make([]byte, 0, directBufSize)
		d.batch = make([]*slot, 0, len(q.slots))
	}
	a := &q.as
	a.mu.Lock()
	batch := append(d.batch[:0], a.doneQ...)
	clear(a.doneQ)
	a.doneQ = a.doneQ[:0]
	a.mu.Unlock()
	if len(batch) == 0 {
		q.out.mu.Unlock()
		return true // an earlier IOFlush of the batch answered it
	}
	// Encode into d.buf through the queue's encoder: writeCompletion
	// appends to the writer's buffer, which is empty, so it is swapped.
	// Every completion taken fits (bounded size, copied data), so
	// writeCompletion neither grows d.buf nor writes the socket.
	// In ring mode large reads are copied too (WriteData copies while
	// flushing is set): the copy costs less than waking the completer.
	saved := q.out.swapBuf(d.buf[:0])
	large := q.ringOn.Load()
	q.out.flushing = large
	took, size := 0, 0
	for ; took < len(batch); took++ {
		c2h := int(batch[took].c2h) // at most what writeCompletion sends
		if c2h >= largeData && !large || size+c2h+maxCompletionPDUs > cap(d.buf) {
			break
		}
		size += c2h + maxCompletionPDUs
		q.writeCompletion(batch[took])
	}
	q.out.flushing = false
	buf := q.out.swapBuf(saved)
	wake := took < len(batch)
	if wake { // the rest is the completer's
		a.mu.Lock()
		a.doneQ = append(a.doneQ, batch[took:]...)
		a.mu.Unlock()
	}
	if q.werr == nil && len(buf) > 0 {
		w, err := d.writeNow(buf)
		q.t.directWrites.Add(1)
		if err != nil {
			q.werr = err
			q.out.err = err
			q.shutdown()
		} else if w < len(buf) {
			q.out.pending = buf[w:] // d.buf is not reused until it has gone
			q.t.directShort.Add(1)
			wake = true
		}
	}
	// Free the slots before out.mu goes: batch is the next caller's. Their
	// PDUs are in buf (data copied): sent, or pending. A release that
	// would start deferred commands (blocking work) leaves them to the
	// completer.
	for i := 0; i < took; i++ {
		s := batch[i]
		batch[i] = nil
		if q.releaseSlot(s) {
			wake = true
		}
		q.inflight.Add(-1)
	}
	clear(batch[took:])
	q.out.mu.Unlock()
	if wake {
		a.wakeCompleter()
	}
	return true
}
