package nvmetcp

import (
	"encoding/binary"

	"github.com/kura-io/kura/internal/nvme"
)

// Encoder writes PDUs to a buffered writer. It never pads (both sides use
// PDA 0) and never flushes; the caller decides when to Flush. It is not
// safe for concurrent use: callers serialise whole PDUs.
type Encoder struct {
	w flushWriter
	// HDgst and DDgst are the negotiated digests.
	HDgst, DDgst bool
	hdr          [maxHeader]byte
	trailer      [digestLen]byte
}

// flushWriter is a buffered writer (bufio.Writer, batchWriter).
type flushWriter interface {
	Write(p []byte) (int, error)
	Flush() error
	Buffered() int
}

// NewEncoder returns an encoder writing to w.
func NewEncoder(w flushWriter) *Encoder { return &Encoder{w: w} }

// Flush flushes the underlying writer.
func (e *Encoder) Flush() error { return e.w.Flush() }

// Buffered returns the number of bytes waiting to be flushed.
func (e *Encoder) Buffered() int { return e.w.Buffered() }

// header writes a PDU header of type t with hlen bytes already in e.hdr[8:],
// data of n bytes following.
func (e *Encoder) header(t, flags uint8, dataLen int) error {
	ti := types[t]
	hl := uint32(ti.hlen)
	hd := ti.digested && e.HDgst
	end := hl
	if hd {
		flags |= FlagHDGST
		end += digestLen
	}
	h := Header{Type: t, Flags: flags, HLen: ti.hlen, PLen: end}
	if dataLen > 0 && ti.hasData {
		h.PDO = uint8(end)
		h.PLen += uint32(dataLen)
		if e.DDgst {
			h.Flags |= FlagDDGST
			h.PLen += digestLen
		}
	} else if dataLen > 0 { // TermReq
		h.PLen += uint32(dataLen)
	}
	h.marshal(e.hdr[:])
	if hd {
		putDigest(e.hdr[hl:], e.hdr[:hl])
	}
	_, err := e.w.Write(e.hdr[:end])
	return err
}

// dataWriter is implemented by writers that can send a large payload
// without copying it (batchWriter).
type dataWriter interface {
	WriteData(p, trailer []byte) error
}

func (e *Encoder) data(p []byte) error {
	if dw, ok := e.w.(dataWriter); ok {
		tr := e.trailer[:0]
		if e.DDgst {
			putDigest(e.trailer[:], p)
			tr = e.trailer[:]
		}
		return dw.WriteData(p, tr)
	}
	if _, err := e.w.Write(p); err != nil {
		return err
	}
	if e.DDgst {
		var b [4]byte
		putDigest(b[:], p)
		_, err := e.w.Write(b[:])
		return err
	}
	return nil
}

func (e *Encoder) zero(n int) { clear(e.hdr[commonLen:n]) }

// WriteICReq writes an ICReq (never digested).
func (e *Encoder) WriteICReq(r ICReq) error {
	e.zero(hlenIC)
	binary.LittleEndian.PutUint16(e.hdr[8:], r.PFV)
	e.hdr[10], e.hdr[11] = r.HPDA, r.Digest
	binary.LittleEndian.PutUint32(e.hdr[12:], r.MaxR2T)
	return e.header(TypeICReq, 0, 0)
}

// WriteICResp writes an ICResp (never digested).
func (e *Encoder) WriteICResp(r ICResp) error {
	e.zero(hlenIC)
	binary.LittleEndian.PutUint16(e.hdr[8:], r.PFV)
	e.hdr[10], e.hdr[11] = r.CPDA, r.Digest
	binary.LittleEndian.PutUint32(e.hdr[12:], r.MaxH2CData)
	return e.header(TypeICResp, 0, 0)
}

// WriteCapsuleCmd writes a command capsule with optional in-capsule data.
func (e *Encoder) WriteCapsuleCmd(c *nvme.SQE, icd []byte) error {
	c.Marshal(e.hdr[8:72])
	if err := e.header(TypeCapsuleCmd, 0, len(icd)); err != nil {
		return err
	}
	if len(icd) > 0 {
		return e.data(icd)
	}
	return nil
}

// WriteCapsuleResp writes a response capsule.
func (e *Encoder) WriteCapsuleResp(c *nvme.CQE) error {
	c.Marshal(e.hdr[8:24])
	return e.header(TypeCapsuleRsp, 0, 0)
}

func (e *Encoder) dataHdr(d DataHdr) {
	le := binary.LittleEndian
	le.PutUint16(e.hdr[8:], d.CCCID)
	le.PutUint16(e.hdr[10:], d.TTag)
	le.PutUint32(e.hdr[12:], d.DataO)
	le.PutUint32(e.hdr[16:], d.DataL)
	le.PutUint32(e.hdr[20:], 0)
}

// WriteH2CData writes one H2CData PDU carrying p (len ≥ 1).
func (e *Encoder) WriteH2CData(cccid, ttag uint16, datao uint32, p []byte, last bool) error {
	e.dataHdr(DataHdr{CCCID: cccid, TTag: ttag, DataO: datao, DataL: uint32(len(p))})
	var fl uint8
	if last {
		fl = FlagLast
	}
	if err := e.header(TypeH2CData, fl, len(p)); err != nil {
		return err
	}
	return e.data(p)
}

// WriteC2HData writes one C2HData PDU carrying p (len ≥ 1). success may
// only be set with last, and only when SQ flow control is disabled.
func (e *Encoder) WriteC2HData(cccid uint16, datao uint32, p []byte, last, success bool) error {
	e.dataHdr(DataHdr{CCCID: cccid, DataO: datao, DataL: uint32(len(p))})
	var fl uint8
	if last {
		fl = FlagLast
		if success {
			fl |= FlagSuccess
		}
	}
	if err := e.header(TypeC2HData, fl, len(p)); err != nil {
		return err
	}
	return e.data(p)
}

// WriteR2T writes an R2T.
func (e *Encoder) WriteR2T(r R2T) error {
	le := binary.LittleEndian
	le.PutUint16(e.hdr[8:], r.CCCID)
	le.PutUint16(e.hdr[10:], r.TTag)
	le.PutUint32(e.hdr[12:], r.R2TO)
	le.PutUint32(e.hdr[16:], r.R2TL)
	le.PutUint32(e.hdr[20:], 0)
	return e.header(TypeR2T, 0, 0)
}

// WriteTermReq writes a C2HTermReq (c2h) or H2CTermReq with up to 128
// bytes of the offending header.
func (e *Encoder) WriteTermReq(c2h bool, fes uint16, fei uint32, bad []byte) error {
	if len(bad) > maxTermData {
		bad = bad[:maxTermData]
	}
	e.zero(hlenTerm)
	binary.LittleEndian.PutUint16(e.hdr[8:], fes)
	binary.LittleEndian.PutUint32(e.hdr[10:], fei)
	t := TypeH2CTermReq
	if c2h {
		t = TypeC2HTermReq
	}
	if err := e.header(t, 0, len(bad)); err != nil {
		return err
	}
	_, err := e.w.Write(bad)
	return err
}
