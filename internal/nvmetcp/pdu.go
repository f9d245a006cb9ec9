package nvmetcp

import (
	"encoding/binary"
	"fmt"
)

// PDU types (NVMe/TCP 1.0 §3.6.2). Even types flow host→controller.
const (
	TypeICReq      uint8 = 0x00
	TypeICResp     uint8 = 0x01
	TypeH2CTermReq uint8 = 0x02
	TypeC2HTermReq uint8 = 0x03
	TypeCapsuleCmd uint8 = 0x04
	TypeCapsuleRsp uint8 = 0x05
	TypeH2CData    uint8 = 0x06
	TypeC2HData    uint8 = 0x07
	TypeR2T        uint8 = 0x09
)

// Common header flags.
const (
	FlagHDGST   uint8 = 0x01
	FlagDDGST   uint8 = 0x02
	FlagLast    uint8 = 0x04
	FlagSuccess uint8 = 0x08
)

// Fixed header lengths (hlen) per type.
const (
	hlenIC      = 128
	hlenTerm    = 24
	hlenCmd     = 72
	hlenRsp     = 24
	hlenData    = 24
	hlenR2T     = 24
	commonLen   = 8
	digestLen   = 4
	maxTermData = 128
	maxHeader   = hlenIC + digestLen
)

// Fatal error status codes carried by H2CTermReq/C2HTermReq (§3.6.2.9).
const (
	FESInvalidHeader   uint16 = 0x01
	FESSequenceError   uint16 = 0x02
	FESHeaderDigest    uint16 = 0x03
	FESDataOutOfRange  uint16 = 0x04
	FESDataLimit       uint16 = 0x05
	FESUnsupportedParm uint16 = 0x06
)

// Header is the 8-byte common header present on every PDU.
type Header struct {
	Type  uint8
	Flags uint8
	HLen  uint8
	PDO   uint8
	PLen  uint32
}

func (h *Header) unmarshal(b []byte) {
	h.Type, h.Flags, h.HLen, h.PDO = b[0], b[1], b[2], b[3]
	h.PLen = binary.LittleEndian.Uint32(b[4:])
}

func (h *Header) marshal(b []byte) {
	b[0], b[1], b[2], b[3] = h.Type, h.Flags, h.HLen, h.PDO
	binary.LittleEndian.PutUint32(b[4:], h.PLen)
}

// typeInfo describes the fixed properties of a PDU type.
type typeInfo struct {
	hlen     uint8
	flags    uint8 // allowed flags
	hasData  bool  // may carry a data segment with digests
	digested bool  // header digest applies
	fromHost bool
}

var types = [10]typeInfo{
	TypeICReq:      {hlen: hlenIC, fromHost: true},
	TypeICResp:     {hlen: hlenIC},
	TypeH2CTermReq: {hlen: hlenTerm, fromHost: true},
	TypeC2HTermReq: {hlen: hlenTerm},
	TypeCapsuleCmd: {hlen: hlenCmd, flags: FlagHDGST | FlagDDGST, hasData: true, digested: true, fromHost: true},
	TypeCapsuleRsp: {hlen: hlenRsp, flags: FlagHDGST, digested: true},
	TypeH2CData:    {hlen: hlenData, flags: FlagHDGST | FlagDDGST | FlagLast, hasData: true, digested: true, fromHost: true},
	TypeC2HData:    {hlen: hlenData, flags: FlagHDGST | FlagDDGST | FlagLast | FlagSuccess, hasData: true, digested: true},
	TypeR2T:        {hlen: hlenR2T, flags: FlagHDGST, digested: true},
}

func typeKnown(t uint8) bool { return int(t) < len(types) && types[t].hlen != 0 }

// ICReq is the Initialize Connection Request (§3.6.2.2).
type ICReq struct {
	PFV    uint16
	HPDA   uint8
	Digest uint8 // bit0 header digest, bit1 data digest
	MaxR2T uint32
}

// ICResp is the Initialize Connection Response (§3.6.2.3).
type ICResp struct {
	PFV        uint16
	CPDA       uint8
	Digest     uint8
	MaxH2CData uint32
}

// Digest bits in ICReq/ICResp.
const (
	DigestHeader uint8 = 0x01
	DigestData   uint8 = 0x02
)

// DataHdr is the PDU-specific part of H2CData and C2HData.
type DataHdr struct {
	CCCID uint16
	TTag  uint16
	DataO uint32
	DataL uint32
}

// R2T is a Ready to Transfer PDU.
type R2T struct {
	CCCID uint16
	TTag  uint16
	R2TO  uint32
	R2TL  uint32
}

// TermReq is the PDU-specific part of H2CTermReq/C2HTermReq.
type TermReq struct {
	FES uint16
	FEI uint32
}

// FatalError is a transport error that ends the connection. The side that
// detects it sends a TermReq carrying FES/FEI (when the peer understands
// it) and closes.
type FatalError struct {
	FES uint16
	FEI uint32
	Msg string
}

func (e *FatalError) Error() string {
	return fmt.Sprintf("nvmetcp: fatal PDU error (fes %#x, fei %d): %s", e.FES, e.FEI, e.Msg)
}

func fatal(fes uint16, fei uint32, format string, args ...any) *FatalError {
	return &FatalError{FES: fes, FEI: fei, Msg: fmt.Sprintf(format, args...)}
}

// TypeName names a PDU type for logs.
func TypeName(t uint8) string {
	switch t {
	case TypeICReq:
		return "ICReq"
	case TypeICResp:
		return "ICResp"
	case TypeH2CTermReq:
		return "H2CTermReq"
	case TypeC2HTermReq:
		return "C2HTermReq"
	case TypeCapsuleCmd:
		return "CapsuleCmd"
	case TypeCapsuleRsp:
		return "CapsuleResp"
	case TypeH2CData:
		return "H2CData"
	case TypeC2HData:
		return "C2HData"
	case TypeR2T:
		return "R2T"
	}
	return fmt.Sprintf("PDU(%#x)", t)
}
