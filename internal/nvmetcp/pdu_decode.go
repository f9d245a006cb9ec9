package nvmetcp

import (
	"bufio"
	"encoding/binary"
	"io"

	"github.com/kura-io/kura/internal/nvme"
)

// Limits bounds what a Decoder accepts. Every length in a received header is
// checked against them before any data is read or buffer chosen.
type Limits struct {
	MaxICD     uint32 // in-capsule data of one CapsuleCmd
	MaxH2CData uint32 // data of one H2CData PDU (our MAXH2CDATA)
	MaxC2HData uint32 // data of one C2HData PDU
}

// Decoder reads PDUs from a stream. It is used by one goroutine. After
// Next returns a PDU that carries data, the caller must consume the data
// with ReadData or Discard before calling Next again.
type Decoder struct {
	r        *bufio.Reader
	fromHost bool // decoding PDUs sent by a host (target side)
	// HDgst and DDgst are the negotiated digests; set them after ICReq/ICResp.
	HDgst, DDgst bool
	Lim          Limits

	h       Header
	hdr     [maxHeader]byte
	pad     uint32
	dataLen uint32
	ddgst   bool
	pending bool // data not yet consumed
	rawLen  int  // header bytes actually read for the current PDU
}

// NewDecoder returns a decoder reading from r. fromHost selects which PDU
// types are legal: host→controller types for a target, the others for a
// host.
func NewDecoder(r *bufio.Reader, fromHost bool, lim Limits) *Decoder {
	return &Decoder{r: r, fromHost: fromHost, Lim: lim}
}

// Buffered reports how many received bytes are already buffered.
func (d *Decoder) Buffered() int { return d.r.Buffered() }

// Header returns the current PDU's common header.
func (d *Decoder) Header() Header { return d.h }

// Raw returns the current PDU's header bytes that were read (at most
// hlen; only the common header when it was rejected).
func (d *Decoder) Raw() []byte { return d.hdr[:min(d.rawLen, int(d.h.HLen))] }

// DataLen is the number of data bytes the current PDU carries.
func (d *Decoder) DataLen() int { return int(d.dataLen) }

// Next reads the next PDU header (and header digest), validating the common
// header in the order: type, flags, hlen, pdo, plen; then the limits. It
// returns a *FatalError for protocol violations and an I/O error when the
// stream fails.
func (d *Decoder) Next() (Header, error) {
	if d.pending {
		if err := d.Discard(); err != nil {
			return Header{}, err
		}
	}
	d.rawLen = 0
	if _, err := io.ReadFull(d.r, d.hdr[:commonLen]); err != nil {
		return Header{}, err
	}
	d.rawLen = commonLen
	raceSync()
	h := &d.h
	h.unmarshal(d.hdr[:])
	if !typeKnown(h.Type) || types[h.Type].fromHost != d.fromHost {
		return *h, fatal(FESInvalidHeader, 0, "unexpected PDU type %#x", h.Type)
	}
	ti := types[h.Type]
	if h.Flags&^ti.flags != 0 {
		return *h, fatal(FESInvalidHeader, 1, "%s: flags %#x not allowed", TypeName(h.Type), h.Flags)
	}
	hd := ti.digested && d.HDgst
	if ti.digested && (h.Flags&FlagHDGST != 0) != d.HDgst {
		return *h, fatal(FESInvalidHeader, 1, "%s: HDGSTF %v but header digest negotiated %v", TypeName(h.Type), h.Flags&FlagHDGST != 0, d.HDgst)
	}
	if h.HLen != ti.hlen {
		return *h, fatal(FESInvalidHeader, 2, "%s: hlen %d, want %d", TypeName(h.Type), h.HLen, ti.hlen)
	}
	hdrEnd := uint32(h.HLen)
	if hd {
		hdrEnd += digestLen
	}
	d.dataLen, d.pad, d.ddgst = 0, 0, false
	switch {
	case h.Type == TypeH2CTermReq || h.Type == TypeC2HTermReq:
		if h.PDO != 0 {
			return *h, fatal(FESInvalidHeader, 3, "TermReq pdo %d", h.PDO)
		}
		if h.PLen < hdrEnd || h.PLen > hdrEnd+maxTermData {
			return *h, fatal(FESInvalidHeader, 4, "TermReq plen %d", h.PLen)
		}
		d.dataLen = h.PLen - hdrEnd
	case ti.hasData && h.PDO != 0:
		pdo := uint32(h.PDO)
		if pdo < hdrEnd || pdo%4 != 0 || pdo > hdrEnd+128 {
			return *h, fatal(FESInvalidHeader, 3, "%s: pdo %d invalid (header ends at %d)", TypeName(h.Type), pdo, hdrEnd)
		}
		dd := uint32(0)
		if d.DDgst {
			dd = digestLen
		}
		if h.PLen < pdo+dd+1 {
			return *h, fatal(FESInvalidHeader, 4, "%s: plen %d too small for pdo %d", TypeName(h.Type), h.PLen, pdo)
		}
		if (h.Flags&FlagDDGST != 0) != d.DDgst {
			return *h, fatal(FESInvalidHeader, 1, "%s: DDGSTF %v but data digest negotiated %v", TypeName(h.Type), h.Flags&FlagDDGST != 0, d.DDgst)
		}
		n := h.PLen - pdo - dd
		var lim uint32
		switch h.Type {
		case TypeCapsuleCmd:
			lim = d.Lim.MaxICD
		case TypeH2CData:
			lim = d.Lim.MaxH2CData
		case TypeC2HData:
			lim = d.Lim.MaxC2HData
		}
		if n > lim {
			return *h, fatal(FESDataLimit, 0, "%s: %d data bytes exceed limit %d", TypeName(h.Type), n, lim)
		}
		d.dataLen, d.pad, d.ddgst = n, pdo-hdrEnd, d.DDgst
	default:
		if h.PDO != 0 {
			return *h, fatal(FESInvalidHeader, 3, "%s: pdo %d on a PDU without data", TypeName(h.Type), h.PDO)
		}
		if h.Type == TypeH2CData || h.Type == TypeC2HData {
			return *h, fatal(FESInvalidHeader, 3, "%s without data (pdo 0)", TypeName(h.Type))
		}
		if ti.hasData && h.Flags&FlagDDGST != 0 {
			return *h, fatal(FESInvalidHeader, 1, "%s: DDGSTF without data", TypeName(h.Type))
		}
		if h.PLen != hdrEnd {
			return *h, fatal(FESInvalidHeader, 4, "%s: plen %d, want %d", TypeName(h.Type), h.PLen, hdrEnd)
		}
	}
	if _, err := io.ReadFull(d.r, d.hdr[commonLen:hdrEnd]); err != nil {
		return *h, unexpectedEOF(err)
	}
	d.rawLen = int(hdrEnd)
	if hd {
		got := binary.LittleEndian.Uint32(d.hdr[h.HLen:])
		if want := digest(d.hdr[:h.HLen]); got != want {
			return *h, fatal(FESHeaderDigest, got, "%s: header digest %#x, expected %#x", TypeName(h.Type), got, want)
		}
	}
	d.pending = d.dataLen > 0
	return *h, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ErrDataDigest is the FatalError.Msg prefix for data digest mismatches;
// see IsDataDigestError.
type dataDigestError struct{ got, want uint32 }

func (e *dataDigestError) Error() string {
	return "nvmetcp: data digest mismatch"
}

// IsDataDigestError reports whether err is a data digest mismatch.
func IsDataDigestError(err error) bool { _, ok := err.(*dataDigestError); return ok }

// ReadData reads the current PDU's data into dst (len(dst) must equal
// DataLen) and checks the data digest.
func (d *Decoder) ReadData(dst []byte) error {
	if !d.pending || len(dst) != int(d.dataLen) {
		return fatal(FESDataOutOfRange, 0, "ReadData of %d bytes, PDU carries %d", len(dst), d.dataLen)
	}
	d.pending = false
	if d.pad > 0 {
		if _, err := d.r.Discard(int(d.pad)); err != nil {
			return unexpectedEOF(err)
		}
	}
	if _, err := io.ReadFull(d.r, dst); err != nil {
		return unexpectedEOF(err)
	}
	if d.ddgst {
		var b [4]byte
		if _, err := io.ReadFull(d.r, b[:]); err != nil {
			return unexpectedEOF(err)
		}
		got, want := binary.LittleEndian.Uint32(b[:]), digest(dst)
		if got != want {
			return &dataDigestError{got, want}
		}
	}
	return nil
}

// Discard skips the current PDU's data.
func (d *Decoder) Discard() error {
	if !d.pending {
		return nil
	}
	d.pending = false
	n := int(d.pad) + int(d.dataLen)
	if d.ddgst {
		n += digestLen
	}
	if _, err := d.r.Discard(n); err != nil {
		return unexpectedEOF(err)
	}
	return nil
}

// Typed accessors for the current PDU. They read the header bytes Next
// stored; call the one matching Header().Type.

// ICReq decodes an ICReq.
func (d *Decoder) ICReq() ICReq {
	b := d.hdr[:]
	return ICReq{PFV: binary.LittleEndian.Uint16(b[8:]), HPDA: b[10], Digest: b[11], MaxR2T: binary.LittleEndian.Uint32(b[12:])}
}

// ICResp decodes an ICResp.
func (d *Decoder) ICResp() ICResp {
	b := d.hdr[:]
	return ICResp{PFV: binary.LittleEndian.Uint16(b[8:]), CPDA: b[10], Digest: b[11], MaxH2CData: binary.LittleEndian.Uint32(b[12:])}
}

// SQE decodes a CapsuleCmd's SQE into c.
func (d *Decoder) SQE(c *nvme.SQE) { c.Unmarshal(d.hdr[8:72]) }

// CQE decodes a CapsuleResp's CQE into c.
func (d *Decoder) CQE(c *nvme.CQE) { c.Unmarshal(d.hdr[8:24]) }

// Data decodes an H2CData/C2HData header.
func (d *Decoder) Data() DataHdr {
	b := d.hdr[:]
	le := binary.LittleEndian
	return DataHdr{CCCID: le.Uint16(b[8:]), TTag: le.Uint16(b[10:]), DataO: le.Uint32(b[12:]), DataL: le.Uint32(b[16:])}
}

// R2T decodes an R2T.
func (d *Decoder) R2T() R2T {
	b := d.hdr[:]
	le := binary.LittleEndian
	return R2T{CCCID: le.Uint16(b[8:]), TTag: le.Uint16(b[10:]), R2TO: le.Uint32(b[12:]), R2TL: le.Uint32(b[16:])}
}

// Term decodes a TermReq.
func (d *Decoder) Term() TermReq {
	b := d.hdr[:]
	return TermReq{FES: binary.LittleEndian.Uint16(b[8:]), FEI: binary.LittleEndian.Uint32(b[10:])}
}
