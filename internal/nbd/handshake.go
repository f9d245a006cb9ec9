package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// errAbort ends negotiation cleanly (NBD_OPT_ABORT or a client that closed
// during negotiation).
var errAbort = errors.New("nbd: client aborted negotiation")

// maxOptions bounds how many options one connection may send before it
// must pick an export (protects against option floods).
const maxOptions = 4096

// negotiation is the state of one fixed-newstyle handshake.
type negotiation struct {
	noZeroes   bool // both sides agreed to omit the 124 padding bytes
	structured bool // NBD_OPT_STRUCTURED_REPLY was acknowledged
	// metaExp is the export the last SET_META_CONTEXT selected
	// base:allocation for (nil: none); blockStatus is set when GO picks it.
	metaExp     *export
	blockStatus bool
	buf         []byte
}

// negotiate runs the handshake on c and returns the export the client
// chose. It returns errAbort for a clean abort, errProtocol (wrapped) for a
// violation, or an I/O error.
func (c *conn) negotiate() (*export, error) {
	var g [greetingLen]byte
	binary.BigEndian.PutUint64(g[0:], magicNBD)
	binary.BigEndian.PutUint64(g[8:], magicIHaveOpt)
	binary.BigEndian.PutUint16(g[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.bw.Write(g[:]); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.br, cf[:]); err != nil {
		return nil, eofAbort(err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&^(cflagFixedNewstyle|cflagNoZeroes) != 0 {
		return nil, fmt.Errorf("%w: unknown client flags %#x", errProtocol, flags)
	}
	if flags&cflagFixedNewstyle == 0 {
		return nil, fmt.Errorf("%w: client does not speak fixed newstyle (flags %#x)", errProtocol, flags)
	}
	c.neg.noZeroes = flags&cflagNoZeroes != 0

	var hdr [optHeaderLen]byte
	for i := 0; i < maxOptions; i++ {
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return nil, eofAbort(err)
		}
		if m := binary.BigEndian.Uint64(hdr[0:]); m != magicIHaveOpt {
			return nil, fmt.Errorf("%w: bad option magic %#x", errProtocol, m)
		}
		opt := binary.BigEndian.Uint32(hdr[8:])
		n := binary.BigEndian.Uint32(hdr[12:])
		if n > maxOptionLen {
			// The payload cannot be skipped cheaply: say why, then drop.
			_ = c.optReply(opt, repErrTooBig, []byte("option too long"))
			return nil, fmt.Errorf("%w: option %d length %d exceeds %d", errProtocol, opt, n, maxOptionLen)
		}
		if cap(c.neg.buf) < int(n) {
			c.neg.buf = make([]byte, n)
		}
		data := c.neg.buf[:n]
		if _, err := io.ReadFull(c.br, data); err != nil {
			return nil, eofAbort(err)
		}
		e, err := c.handleOption(opt, data)
		if err != nil || e != nil {
			return e, err
		}
	}
	return nil, fmt.Errorf("%w: more than %d options", errProtocol, maxOptions)
}

// eofAbort turns a client hang-up during negotiation into errAbort.
func eofAbort(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errAbort
	}
	return err
}
