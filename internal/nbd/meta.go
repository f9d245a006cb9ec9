package nbd

import (
	"encoding/binary"
	"fmt"

	"github.com/kura-io/kura/internal/blockdev"
)

// Block status: Kura offers the single meta context "base:allocation".
// Devices implementing blockdev.Allocation report holes (NBD_STATE_HOLE |
// NBD_STATE_ZERO: their unallocated ranges read as zeros); other devices
// report everything allocated, which is always correct.
const (
	metaBaseAllocation        = "base:allocation"
	metaContextID      uint32 = 1

	repMetaContext       uint32 = 4
	replyTypeBlockStatus uint16 = 5
	cmdFlagReqOne        uint16 = 1 << 3

	stateHole uint32 = 1 << 0
	stateZero uint32 = 1 << 1

	// bsGranule is the probe size of one Allocated call; bsMaxProbes and
	// bsMaxExtents bound the work and the reply of one BLOCK_STATUS (the
	// extents may cover less than the request; clients ask again).
	bsGranule    = 1 << 20
	bsMaxProbes  = 256
	bsMaxExtents = 128
)

// optMetaContext answers NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT.
func (c *conn) optMetaContext(opt uint32, data []byte) error {
	if opt == optSetMetaContext {
		c.neg.metaExp = nil // replaced even on failure
		if !c.neg.structured {
			return c.optReply(opt, repErrInvalid, []byte("structured replies not negotiated"))
		}
	}
	name, queries, err := parseMetaContext(data)
	if err != nil {
		return c.optReply(opt, repErrInvalid, []byte(err.Error()))
	}
	e := c.srv.lookup(name, c.addr)
	if e == nil {
		return c.optReply(opt, repErrUnknown, []byte(fmt.Sprintf("unknown export %q", name)))
	}
	match := false
	for _, q := range queries {
		if q == metaBaseAllocation || opt == optListMetaContext && q == "base:" {
			match = true
		}
	}
	if opt == optListMetaContext && len(queries) == 0 {
		match = true
	}
	if match {
		p := binary.BigEndian.AppendUint32(nil, metaContextID)
		if opt == optListMetaContext {
			binary.BigEndian.PutUint32(p, 0) // IDs are only meaningful for SET
		}
		if err := c.optReply(opt, repMetaContext, append(p, metaBaseAllocation...)); err != nil {
			return err
		}
		if opt == optSetMetaContext {
			c.neg.metaExp = e
		}
	}
	return c.optReply(opt, repAck, nil)
}

// blockStatus fills r's buffer with a base:allocation BLOCK_STATUS payload
// (context ID + extents) for r's range and records its length.
func (c *conn) blockStatus(r *request) uint32 {
	buf := r.data(4 + 8*bsMaxExtents)
	binary.BigEndian.PutUint32(buf, metaContextID)
	pos, end := int64(r.off), int64(r.off)+int64(r.length)
	alloc, ok := c.dev.(blockdev.Allocation)
	if !ok {
		binary.BigEndian.PutUint32(buf[4:], r.length)
		binary.BigEndian.PutUint32(buf[8:], 0)
		r.replyLen = 12
		return 0
	}
	n := 0
	var curLen int64
	var curFlags uint32
	emit := func() {
		binary.BigEndian.PutUint32(buf[4+8*n:], uint32(curLen))
		binary.BigEndian.PutUint32(buf[8+8*n:], curFlags)
		n++
	}
	for probes := 0; pos < end && probes < bsMaxProbes; probes++ {
		next := min((pos/bsGranule+1)*bsGranule, end)
		a, err := alloc.Allocated(pos, next-pos)
		if err != nil {
			return errnoFor(err, false)
		}
		f := uint32(0)
		if !a {
			f = stateHole | stateZero
		}
		if curLen > 0 && f != curFlags {
			if r.flags&cmdFlagReqOne != 0 || n == bsMaxExtents-1 {
				break
			}
			emit()
			curLen = 0
		}
		curFlags = f
		curLen += next - pos
		pos = next
	}
	emit()
	r.replyLen = 4 + 8*n
	return 0
}
