package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// errBadOption is returned by the option parsers; the caller answers
// NBD_REP_ERR_INVALID and keeps negotiating.
var errBadOption = errors.New("nbd: malformed option data")

// infoRequest is the parsed payload of NBD_OPT_INFO / NBD_OPT_GO.
type infoRequest struct {
	name  string
	infos []uint16 // requested info types, unknown ones included
}

// parseInfoRequest decodes NBD_OPT_INFO/GO data: name length (4), name,
// count (2), count info codes (2 each). Every length is checked against the
// data before use; the result never aliases data.
func parseInfoRequest(data []byte) (infoRequest, error) {
	var r infoRequest
	if len(data) < 6 {
		return r, fmt.Errorf("%w: %d bytes, need at least 6", errBadOption, len(data))
	}
	nameLen := binary.BigEndian.Uint32(data)
	if uint64(nameLen) > uint64(len(data)-6) {
		return r, fmt.Errorf("%w: name length %d exceeds data", errBadOption, nameLen)
	}
	if nameLen > maxStringLen {
		return r, fmt.Errorf("%w: name length %d exceeds %d", errBadOption, nameLen, maxStringLen)
	}
	name := data[4 : 4+nameLen]
	if !utf8.Valid(name) {
		return r, fmt.Errorf("%w: name is not UTF-8", errBadOption)
	}
	rest := data[4+nameLen:]
	count := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*count {
		return r, fmt.Errorf("%w: %d info requests but %d bytes", errBadOption, count, len(rest))
	}
	r.name = string(name)
	r.infos = make([]uint16, count)
	for i := range r.infos {
		r.infos[i] = binary.BigEndian.Uint16(rest[2*i:])
	}
	return r, nil
}

// parseMetaContext decodes NBD_OPT_LIST/SET_META_CONTEXT data: name
// length (4), name, query count (4), then count × (length (4) + query).
// Every length is checked against the remaining data before use.
func parseMetaContext(data []byte) (string, []string, error) {
	if len(data) < 8 {
		return "", nil, fmt.Errorf("%w: meta context data too short", errBadOption)
	}
	nameLen := binary.BigEndian.Uint32(data)
	if uint64(nameLen) > uint64(len(data)-8) || nameLen > maxStringLen {
		return "", nil, fmt.Errorf("%w: meta context name length %d", errBadOption, nameLen)
	}
	name := string(data[4 : 4+nameLen])
	rest := data[4+nameLen:]
	count := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(count)*4 > uint64(len(rest)) {
		return "", nil, fmt.Errorf("%w: %d meta context queries in %d bytes", errBadOption, count, len(rest))
	}
	queries := make([]string, 0, count)
	for i := uint32(0); i < count; i++ {
		if len(rest) < 4 {
			return "", nil, fmt.Errorf("%w: meta context query %d truncated", errBadOption, i)
		}
		ql := binary.BigEndian.Uint32(rest)
		if uint64(ql) > uint64(len(rest)-4) || ql > maxStringLen {
			return "", nil, fmt.Errorf("%w: meta context query %d length %d", errBadOption, i, ql)
		}
		queries = append(queries, string(rest[4:4+ql]))
		rest = rest[4+ql:]
	}
	if len(rest) != 0 {
		return "", nil, fmt.Errorf("%w: %d trailing bytes after meta context queries", errBadOption, len(rest))
	}
	return name, queries, nil
}

// handleOption answers one option. It returns the export when negotiation
// is finished (GO / EXPORT_NAME), errAbort on ABORT, or a fatal error.
func (c *conn) handleOption(opt uint32, data []byte) (*export, error) {
	switch opt {
	case optExportName:
		return c.optExportName(data)
	case optAbort:
		_ = c.optReply(opt, repAck, nil)
		return nil, errAbort
	case optList:
		if len(data) != 0 {
			return nil, c.optReply(opt, repErrInvalid, []byte("NBD_OPT_LIST takes no data"))
		}
		for _, e := range c.srv.visible(c.addr) {
			p := make([]byte, 4, 4+len(e.name)+len(e.opts.Description))
			binary.BigEndian.PutUint32(p, uint32(len(e.name)))
			p = append(p, e.name...)
			p = append(p, e.opts.Description...)
			if err := c.optReply(opt, repServer, p); err != nil {
				return nil, err
			}
		}
		return nil, c.optReply(opt, repAck, nil)
	case optInfo, optGo:
		return c.optInfoGo(opt, data)
	case optStructuredReply:
		if len(data) != 0 {
			return nil, c.optReply(opt, repErrInvalid, []byte("NBD_OPT_STRUCTURED_REPLY takes no data"))
		}
		if c.neg.structured {
			return nil, c.optReply(opt, repErrInvalid, []byte("structured replies already negotiated"))
		}
		c.neg.structured = true
		return nil, c.optReply(opt, repAck, nil)
	case optListMetaContext, optSetMetaContext:
		return nil, c.optMetaContext(opt, data)
	default:
		return nil, c.optReply(opt, repErrUnsup, []byte("option not supported"))
	}
}

// optExportName handles NBD_OPT_EXPORT_NAME: success switches to
// transmission with no option reply; failure drops the connection.
func (c *conn) optExportName(data []byte) (*export, error) {
	if len(data) > maxStringLen || !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: bad export name in NBD_OPT_EXPORT_NAME", errProtocol)
	}
	e := c.srv.lookup(string(data), c.addr)
	if e == nil {
		return nil, fmt.Errorf("%w: unknown export %q", errProtocol, data)
	}
	var p [8 + 2 + exportNameZeroPad]byte
	binary.BigEndian.PutUint64(p[0:], uint64(e.dev.Size()))
	binary.BigEndian.PutUint16(p[8:], transmissionFlags(e))
	n := len(p)
	if c.neg.noZeroes {
		n = 10
	}
	if _, err := c.bw.Write(p[:n]); err != nil {
		return nil, err
	}
	return e, c.bw.Flush()
}

// optInfoGo handles NBD_OPT_INFO and NBD_OPT_GO.
func (c *conn) optInfoGo(opt uint32, data []byte) (*export, error) {
	req, err := parseInfoRequest(data)
	if err != nil {
		return nil, c.optReply(opt, repErrInvalid, []byte(err.Error()))
	}
	if c.srv.shuttingDown() {
		return nil, c.optReply(opt, repErrShutdown, []byte("server shutting down"))
	}
	e := c.srv.lookup(req.name, c.addr)
	if e == nil {
		return nil, c.optReply(opt, repErrUnknown, []byte(fmt.Sprintf("unknown export %q", req.name)))
	}
	var p [14]byte
	binary.BigEndian.PutUint16(p[0:], infoExport)
	binary.BigEndian.PutUint64(p[2:], uint64(e.dev.Size()))
	binary.BigEndian.PutUint16(p[10:], transmissionFlags(e))
	if err := c.optReply(opt, repInfo, p[:12]); err != nil {
		return nil, err
	}
	// Block size constraints are sent whether asked or not (clients
	// ignore unrequested items; qemu and libnbd use them).
	min, pref, max := blockSizes(e)
	binary.BigEndian.PutUint16(p[0:], infoBlockSize)
	binary.BigEndian.PutUint32(p[2:], min)
	binary.BigEndian.PutUint32(p[6:], pref)
	binary.BigEndian.PutUint32(p[10:], max)
	if err := c.optReply(opt, repInfo, p[:14]); err != nil {
		return nil, err
	}
	for _, t := range req.infos {
		var s string
		switch t {
		case infoName:
			s = e.name
		case infoDescription:
			s = e.opts.Description
		default:
			continue
		}
		b := make([]byte, 2, 2+len(s))
		binary.BigEndian.PutUint16(b, t)
		if err := c.optReply(opt, repInfo, append(b, s...)); err != nil {
			return nil, err
		}
	}
	if opt == optInfo {
		return nil, c.optReply(opt, repAck, nil)
	}
	c.neg.blockStatus = c.neg.structured && c.neg.metaExp == e
	if err := c.optReply(opt, repAck, nil); err != nil {
		return nil, err
	}
	return e, nil
}

// optReply writes one fixed-newstyle option reply and flushes it.
func (c *conn) optReply(opt, typ uint32, data []byte) error {
	var h [20]byte
	binary.BigEndian.PutUint64(h[0:], magicOptReply)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	if _, err := c.bw.Write(h[:]); err != nil {
		return err
	}
	if _, err := c.bw.Write(data); err != nil {
		return err
	}
	return c.bw.Flush()
}

// transmissionFlags returns the flags advertised for e.
func transmissionFlags(e *export) uint16 {
	f := tflagHasFlags | tflagSendFlush | tflagCanMultiConn
	if e.opts.ReadOnly {
		return f | tflagReadOnly
	}
	return f | tflagSendFUA | tflagSendTrim | tflagSendWriteZeroes
}

// blockSizes returns the minimum, preferred and maximum payload sizes for e.
func blockSizes(e *export) (min, pref, max uint32) {
	min = uint32(e.dev.BlockSize())
	pref = preferredBlock
	if pref < min {
		pref = min
	}
	return min, pref, maxPayload
}
