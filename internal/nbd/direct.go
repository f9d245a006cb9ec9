package nbd

// directBufSize bounds the replies one direct write carries. Replies with
// largeReply bytes of data or more take the direct path in ring mode only
// (see replyDirect).
const directBufSize = 512 << 10

// directWriter writes replies without blocking (all fields under conn.wmu).
type directWriter struct {
	buf []byte // encoded replies of one batch (allocated on first use)
	q   [numSlots]*request
}

// replyDirect answers the finished asynchronous requests on the goroutine
// that completed them (the device's reaper), which saves waking the
// replier. It never blocks: when the writer is busy, or buffered or
// pending bytes must go out first, it returns false and the replier does
// the work; replies it cannot fit go back to the replier, and what
// the socket does not take now stays in c.pending for the replier to
// write. A client that stops reading therefore never stalls the device.
func (c *conn) replyDirect() bool {
	d := &c.direct
	if !c.sock.socket || !c.wmu.TryLock() {
		return false
	}
	// bw may hold the tail of a reply whose head it has already written
	// (bufio flushes at buffer boundaries, not reply boundaries): then
	// nothing else may go out before it.
	if c.werr != nil || len(c.pending) > 0 || c.bw.Buffered() > 0 {
		c.wmu.Unlock()
		return false
	}
	c.doneMu.Lock()
	n := copy(d.q[:], c.doneQ)
	clear(c.doneQ)
	c.doneQ = c.doneQ[:0]
	c.doneMu.Unlock()
	if n == 0 {
		c.wmu.Unlock()
		return true // an earlier IOFlush of the batch answered it
	}
	if d.buf == nil {
		d.buf = make([]byte, 0, directBufSize)
	}
	// In ring mode large reads are copied too: the copy costs less than
	// waking the replier for its writev, and the ring thread is the one
	// completing them.
	large := c.ringOn.Load()
	buf := d.buf[:0]
	took := 0
	for ; took < n; took++ {
		r := d.q[took]
		h, data := c.encodeReply(r, r.code)
		if len(data) >= largeReply && !large || len(buf)+len(h)+len(data) > cap(buf) {
			break
		}
		buf = append(buf, h...)
		buf = append(buf, data...)
	}
	wake := took < n
	if wake { // the rest is the replier's
		c.doneMu.Lock()
		c.doneQ = append(c.doneQ, d.q[took:n]...)
		c.doneMu.Unlock()
	}
	var err error
	if len(buf) > 0 {
		var w int
		w, err = c.sock.writeNow(buf)
		c.srv.directWrites.Add(1)
		if err != nil {
			c.werr = err
		} else if w < len(buf) {
			c.pending = append(c.pending[:0], buf[w:]...)
			c.srv.directShort.Add(1)
			wake = true
		}
	}
	// Free the slots before wmu goes: d.q is the next caller's (a nexus'
	// children complete on several goroutines). finish never blocks.
	for i := 0; i < took; i++ {
		r := d.q[i]
		d.q[i] = nil
		c.finish(r) // its reply is in buf (copied): sent, or pending
		c.inflight.Add(-1)
	}
	c.wmu.Unlock()
	if err != nil {
		c.abort()
	}
	if wake {
		c.wakeReplier()
	}
	return true
}

// drainPending writes the unsent tail of a direct write, blocking if it
// must (wmu held; never on the completing goroutine).
func (c *conn) drainPending() error {
	if len(c.pending) == 0 {
		return nil
	}
	_, err := c.sock.Write(c.pending)
	c.pending = c.pending[:0]
	return err
}

// connWriter is the buffered writer's sink: the tail of a direct write
// goes out before anything else (called with wmu held).
type connWriter struct{ c *conn }

func (w connWriter) Write(p []byte) (int, error) {
	if err := w.c.drainPending(); err != nil {
		return 0, err
	}
	return w.c.sock.Write(p)
}
