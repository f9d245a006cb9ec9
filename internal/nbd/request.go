package nbd

import (
	"encoding/binary"
	"fmt"
	"io"
)

// request is one preallocated per-connection slot: the decoded request,
// its payload buffer and scratch space for the reply header. A slot is
// owned by exactly one goroutine at a time (reader → worker → free list).
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	off    uint64
	length uint32

	c        *conn   // the connection owning the slot (fixed)
	bufp     *[]byte // pooled payload buffer, kept across requests when small
	charged  int64   // bytes taken from the connection budget
	replyLen int     // BLOCK_STATUS payload bytes in bufp
	code     uint32  // NBD error of a finished asynchronous request
	hdr      [requestHeaderLen]byte
	rhdr     [structReplyLen + 8]byte // reply header scratch
}

// decodeRequest parses a 28-byte request header. A bad magic is a protocol
// violation (the stream cannot be resynchronised).
func decodeRequest(r *request, h []byte) error {
	if m := binary.BigEndian.Uint32(h[0:]); m != magicRequest {
		return fmt.Errorf("%w: bad request magic %#x", errProtocol, m)
	}
	r.flags = binary.BigEndian.Uint16(h[4:])
	r.typ = binary.BigEndian.Uint16(h[6:])
	r.cookie = binary.BigEndian.Uint64(h[8:])
	r.off = binary.BigEndian.Uint64(h[16:])
	r.length = binary.BigEndian.Uint32(h[24:])
	if r.typ == cmdWrite && r.length > maxPayload {
		// The payload cannot be skipped without reading it: disconnect.
		return fmt.Errorf("%w: write payload %d exceeds %d", errProtocol, r.length, maxPayload)
	}
	return nil
}

// data returns the slot's buffer resized to n bytes.
func (r *request) data(n int) []byte {
	if r.bufp == nil || cap(*r.bufp) < n {
		if r.bufp != nil {
			putBuf(r.bufp)
		}
		r.bufp = getBuf(n)
	}
	return (*r.bufp)[:n]
}

// release drops a large buffer back to the pool so idle slots do not pin
// memory.
func (r *request) release() {
	if r.bufp != nil && cap(*r.bufp) > keepBufMaxLen {
		putBuf(r.bufp)
		r.bufp = nil
	}
}

// readRequest reads the next request (and a WRITE payload) into r.
func (c *conn) readRequest(r *request) error {
	if c.br.Buffered() < requestHeaderLen {
		c.beforeBlock()
	}
	if _, err := io.ReadFull(c.br, r.hdr[:]); err != nil {
		return err
	}
	c.fillReqs++
	if err := decodeRequest(r, r.hdr[:]); err != nil {
		return err
	}
	if (r.typ == cmdRead || r.typ == cmdWrite) && r.length > keepBufMaxLen && r.length <= maxPayload {
		n := int64(r.length)
		if !c.budget.tryAcquire(n) {
			c.beforeBlock()
			c.acquireBudget(n)
		}
		r.charged = n
	}
	if r.typ == cmdWrite && r.length > 0 {
		if c.br.Buffered() < int(r.length) {
			c.beforeBlock()
		}
		if _, err := io.ReadFull(c.br, r.data(int(r.length))); err != nil {
			return err
		}
	}
	return nil
}

// validate checks a request against the export and returns the NBD error
// for it, or 0.
func (c *conn) validate(r *request) uint32 {
	write := false
	allowed := cmdFlagFUA
	switch r.typ {
	case cmdRead:
		allowed |= cmdFlagDF // we always answer with one chunk
	case cmdWrite, cmdTrim:
		write = true
	case cmdWriteZeroes:
		write = true
		allowed |= cmdFlagNoHole
	case cmdFlush:
		if r.flags&^allowed != 0 {
			return errInval
		}
		return 0
	case cmdCache:
	case cmdBlockStatus:
		if !c.blockStatusOn || r.length == 0 {
			return errInval
		}
		allowed |= cmdFlagReqOne
	default: // unknown commands
		return errInval
	}
	if r.flags&^allowed != 0 {
		return errInval
	}
	if write && c.readOnly {
		return errPerm
	}
	if (r.typ == cmdRead || r.typ == cmdWrite) && r.length > maxPayload {
		return errInval
	}
	if r.off%c.minBlock != 0 || uint64(r.length)%c.minBlock != 0 {
		return errInval
	}
	if r.off > c.size || uint64(r.length) > c.size-r.off {
		if write && r.typ != cmdTrim {
			return errNoSpc
		}
		return errInval
	}
	return 0
}

// execute validates and performs r against the device; it returns the NBD
// error value for the reply.
func (c *conn) execute(r *request) uint32 {
	if e := c.validate(r); e != 0 {
		return e
	}
	off, n := int64(r.off), int64(r.length)
	var err error
	switch r.typ {
	case cmdRead:
		if n > 0 {
			_, err = c.dev.ReadAt(r.data(int(n)), off)
		}
		return errnoFor(err, false)
	case cmdWrite:
		if n > 0 {
			_, err = c.dev.WriteAt(r.data(int(n)), off)
		}
	case cmdFlush:
		return errnoFor(c.dev.Flush(), false)
	case cmdTrim:
		if n > 0 {
			err = c.dev.Unmap(off, n)
		}
	case cmdWriteZeroes:
		// With or without NO_HOLE the device zeroes the range; Device
		// has no "punch hole and guarantee zeroes" primitive.
		if n > 0 {
			err = c.dev.WriteZeroes(off, n)
		}
	case cmdCache:
		return 0
	case cmdBlockStatus:
		return c.blockStatus(r)
	}
	if err == nil && r.flags&cmdFlagFUA != 0 {
		err = c.dev.Flush()
	}
	return errnoFor(err, true)
}

// startAsync starts a plain READ or WRITE on a device that can run it
// asynchronously (blockdev.Uring): the reader goes back to the socket at
// once; the device's reaping goroutine reports completions (IODone,
// IOFlush) and the connection's replier answers them, one wake-up and one
// write(2) per batch, so no worker is woken per request. It returns false when r must take the
// ordinary path (other commands, FUA, invalid requests, device refused).
func (c *conn) startAsync(r *request) bool {
	if (r.typ != cmdRead && r.typ != cmdWrite) || r.flags&cmdFlagFUA != 0 || r.length == 0 || c.validate(r) != 0 {
		return false
	}
	c.inflight.Add(1)
	c.wg.Add(1)
	if c.async.StartQueued(r.typ == cmdWrite, r.data(int(r.length)), int64(r.off), r) {
		c.queuedIO = true
		return true
	}
	c.inflight.Add(-1)
	c.wg.Done()
	return false
}

// IODone records the result of an asynchronous request
// (blockdev.IOCompletion) for the connection's replier. It runs on the
// device's reaping goroutine, so it must not touch the socket: a client
// that stops reading would otherwise stall every user of the device.
func (r *request) IODone(n int, err error) {
	c := r.c
	r.code = errnoFor(err, r.typ == cmdWrite)
	c.doneMu.Lock()
	c.doneQ = append(c.doneQ, r) // within capacity: at most numSlots requests exist
	c.doneMu.Unlock()
}

// IOFlush answers the batch of completions the device has delivered: on
// the completing goroutine with one non-blocking write when it can
// (replyDirect), otherwise by waking the replier, so the whole batch costs
// one write(2) either way.
func (r *request) IOFlush() {
	c := r.c
	if !c.replyDirect() {
		c.wakeReplier()
	}
	c.wg.Done()
}

// wakeReplier makes the replier run once more.
func (c *conn) wakeReplier() {
	select {
	case c.doneWake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// replier answers finished asynchronous requests until transmit closes
// doneWake (after every IOFlush has run).
func (c *conn) replier() {
	defer close(c.replierDone)
	for range c.doneWake {
		c.wmu.Lock()
		if c.werr == nil {
			c.werr = c.drainPending() // the tail of a direct write comes first
		}
		err := c.werr
		c.wmu.Unlock()
		if err != nil {
			c.abort()
		}
		for {
			c.doneMu.Lock()
			q := c.doneQ
			c.doneQ, c.doneBuf = c.doneBuf[:0], q
			c.doneMu.Unlock()
			if len(q) == 0 {
				break
			}
			for i, r := range q {
				q[i] = nil
				c.reply(r, r.code, false)
				c.finish(r)
				c.inflight.Add(-1)
			}
			c.flushPending()
		}
	}
}

// submitQueued submits async I/O the reader queued.
func (c *conn) submitQueued() {
	if c.queuedIO {
		c.queuedIO = false
		c.async.Submit()
	}
}

// beforeBlock runs before the reader may block: queued I/O is submitted
// (in ring mode by the queue's wait, with the same system call) and
// deferred replies are flushed.
func (c *conn) beforeBlock() {
	if c.q == nil {
		c.submitQueued()
	}
	c.flushPending()
}
