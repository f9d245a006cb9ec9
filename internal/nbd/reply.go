package nbd

import "encoding/binary"

// largeReply is the payload size from which a reply bypasses the buffered
// writer: header and data go out in one writev without copying the data.
const largeReply = 64 << 10

// reply encodes the answer to r (NBD error value code) into r's scratch
// header and hands it to the shared writer. Under structured replies a
// READ is answered with one OFFSET_DATA chunk (or NONE for length 0) and
// every error with an ERROR chunk; otherwise simple replies are used.
func (c *conn) reply(r *request, code uint32, flush bool) {
	h, data := c.encodeReply(r, code)
	c.send(h, data, flush)
}

// encodeReply writes the reply header for r into r's scratch space and
// returns it with the payload that follows it (nil if none).
func (c *conn) encodeReply(r *request, code uint32) (h, data []byte) {
	h = r.rhdr[:]
	switch {
	case c.structured && code != 0:
		binary.BigEndian.PutUint32(h[0:], magicStructReply)
		binary.BigEndian.PutUint16(h[4:], replyFlagDone)
		binary.BigEndian.PutUint16(h[6:], replyTypeError)
		binary.BigEndian.PutUint64(h[8:], r.cookie)
		binary.BigEndian.PutUint32(h[16:], 6)
		binary.BigEndian.PutUint32(h[20:], code)
		binary.BigEndian.PutUint16(h[24:], 0) // no message
		h = h[:26]
	case c.structured && r.typ == cmdRead && r.length > 0:
		binary.BigEndian.PutUint32(h[0:], magicStructReply)
		binary.BigEndian.PutUint16(h[4:], replyFlagDone)
		binary.BigEndian.PutUint16(h[6:], replyTypeOffsetData)
		binary.BigEndian.PutUint64(h[8:], r.cookie)
		binary.BigEndian.PutUint32(h[16:], 8+r.length)
		binary.BigEndian.PutUint64(h[20:], r.off)
		data = (*r.bufp)[:r.length]
	case c.structured && r.typ == cmdBlockStatus:
		binary.BigEndian.PutUint32(h[0:], magicStructReply)
		binary.BigEndian.PutUint16(h[4:], replyFlagDone)
		binary.BigEndian.PutUint16(h[6:], replyTypeBlockStatus)
		binary.BigEndian.PutUint64(h[8:], r.cookie)
		binary.BigEndian.PutUint32(h[16:], uint32(r.replyLen))
		h = h[:structReplyLen]
		data = (*r.bufp)[:r.replyLen]
	case c.structured && r.typ == cmdRead:
		binary.BigEndian.PutUint32(h[0:], magicStructReply)
		binary.BigEndian.PutUint16(h[4:], replyFlagDone)
		binary.BigEndian.PutUint16(h[6:], replyTypeNone)
		binary.BigEndian.PutUint64(h[8:], r.cookie)
		binary.BigEndian.PutUint32(h[16:], 0)
		h = h[:structReplyLen]
	default:
		binary.BigEndian.PutUint32(h[0:], magicSimpleReply)
		binary.BigEndian.PutUint32(h[4:], code)
		binary.BigEndian.PutUint64(h[8:], r.cookie)
		h = h[:simpleReplyLen]
		if code == 0 && r.typ == cmdRead && r.length > 0 {
			data = (*r.bufp)[:r.length]
		}
	}
	return h, data
}

// send appends one reply to the connection's buffered writer. Replies
// coalesce: a completion that finds others queued behind it leaves the
// flush to the last of them, so a burst of completions costs one write
// syscall. The reader passes flush=false while more requests are already
// buffered; it then flushes before it next blocks (flushPending). wmu is
// held only for the append and the flush.
func (c *conn) send(hdr, data []byte, flush bool) {
	c.queued.Add(1)
	c.wmu.Lock()
	switch {
	case c.werr != nil:
	case len(data) >= largeReply:
		c.srv.largeWritevs.Add(1)
		c.werr = c.writev(hdr, data)
	default:
		if _, err := c.bw.Write(hdr); err != nil {
			c.werr = err
		} else if len(data) > 0 {
			_, c.werr = c.bw.Write(data)
		}
	}
	if c.queued.Add(-1) == 0 && c.werr == nil {
		if flush {
			c.werr = c.bw.Flush()
			c.dirty.Store(false)
		} else {
			c.dirty.Store(true)
		}
	}
	err := c.werr
	c.wmu.Unlock()
	if err != nil {
		c.abort()
	}
}

// flushPending writes out replies whose flush the reader deferred. The
// reader calls it before any read that may block.
func (c *conn) flushPending() {
	if !c.dirty.Load() {
		return
	}
	c.wmu.Lock()
	if c.werr == nil {
		c.werr = c.drainPending()
	}
	if c.werr == nil {
		c.werr = c.bw.Flush()
	}
	c.dirty.Store(false)
	err := c.werr
	c.wmu.Unlock()
	if err != nil {
		c.abort()
	}
}

// writev sends hdr and data with one writev(2), after any buffered
// replies. Called with wmu held.
func (c *conn) writev(hdr, data []byte) error {
	if err := c.drainPending(); err != nil {
		return err
	}
	if c.bw.Buffered() > 0 {
		if err := c.bw.Flush(); err != nil {
			return err
		}
	}
	return c.sock.writev(hdr, data)
}
