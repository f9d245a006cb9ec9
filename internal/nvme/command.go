package nvme

import "encoding/binary"

// SQE and CQE sizes in bytes.
const (
	SQESize = 64
	CQESize = 16
)

// SQE flag bits (byte 1).
const (
	SQEFlagsPSDTMask = 0xC0
	SQEFlagsPSDTSGL  = 0x40 // SGL for data, metadata contiguous
	SQEFlagsFuseMask = 0x03
)

// SGL descriptor identifiers (type<<4 | subtype) used on NVMe/TCP.
const (
	SGLDataBlockOffset  uint8 = 0x01 // in-capsule data
	SGLTransportDataBlk uint8 = 0x5A // data moved by C2HData / R2T+H2CData
)

// SGL is the single data pointer descriptor at SQE offset 24.
type SGL struct {
	Addr   uint64
	Length uint32
	ID     uint8 // type<<4 | subtype
}

// SQE is a 64-byte submission queue entry.
type SQE struct {
	Opcode uint8
	Flags  uint8
	CID    uint16
	NSID   uint32 // for fabrics commands byte 0 is FCTYPE; see FCType
	CDW2   uint32
	CDW3   uint32
	MPTR   uint64
	SGL    SGL
	CDW10  uint32
	CDW11  uint32
	CDW12  uint32
	CDW13  uint32
	CDW14  uint32
	CDW15  uint32
}

// FCType returns the fabrics command type (SQE byte 4).
func (c *SQE) FCType() uint8 { return uint8(c.NSID) }

// Unmarshal decodes b (at least 64 bytes).
func (c *SQE) Unmarshal(b []byte) {
	_ = b[63]
	le := binary.LittleEndian
	c.Opcode = b[0]
	c.Flags = b[1]
	c.CID = le.Uint16(b[2:])
	c.NSID = le.Uint32(b[4:])
	c.CDW2 = le.Uint32(b[8:])
	c.CDW3 = le.Uint32(b[12:])
	c.MPTR = le.Uint64(b[16:])
	c.SGL.Addr = le.Uint64(b[24:])
	c.SGL.Length = le.Uint32(b[32:])
	c.SGL.ID = b[39]
	c.CDW10 = le.Uint32(b[40:])
	c.CDW11 = le.Uint32(b[44:])
	c.CDW12 = le.Uint32(b[48:])
	c.CDW13 = le.Uint32(b[52:])
	c.CDW14 = le.Uint32(b[56:])
	c.CDW15 = le.Uint32(b[60:])
}

// Marshal encodes c into b (at least 64 bytes).
func (c *SQE) Marshal(b []byte) {
	_ = b[63]
	le := binary.LittleEndian
	b[0] = c.Opcode
	b[1] = c.Flags
	le.PutUint16(b[2:], c.CID)
	le.PutUint32(b[4:], c.NSID)
	le.PutUint32(b[8:], c.CDW2)
	le.PutUint32(b[12:], c.CDW3)
	le.PutUint64(b[16:], c.MPTR)
	le.PutUint64(b[24:], c.SGL.Addr)
	le.PutUint32(b[32:], c.SGL.Length)
	b[36], b[37], b[38] = 0, 0, 0
	b[39] = c.SGL.ID
	le.PutUint32(b[40:], c.CDW10)
	le.PutUint32(b[44:], c.CDW11)
	le.PutUint32(b[48:], c.CDW12)
	le.PutUint32(b[52:], c.CDW13)
	le.PutUint32(b[56:], c.CDW14)
	le.PutUint32(b[60:], c.CDW15)
}

// SLBA returns the starting LBA of an I/O command (CDW10/11).
func (c *SQE) SLBA() uint64 { return uint64(c.CDW11)<<32 | uint64(c.CDW10) }

// NLB returns the number of logical blocks (CDW12 15:0 is 0's based).
func (c *SQE) NLB() uint32 { return c.CDW12&0xFFFF + 1 }

// SetLBA sets SLBA and the 0's based NLB (nlb ≥ 1), keeping CDW12's upper bits.
func (c *SQE) SetLBA(slba uint64, nlb uint32) {
	c.CDW10 = uint32(slba)
	c.CDW11 = uint32(slba >> 32)
	c.CDW12 = c.CDW12&^0xFFFF | (nlb-1)&0xFFFF
}

// CQE is a 16-byte completion queue entry.
type CQE struct {
	DW0    uint32
	DW1    uint32
	SQHD   uint16
	SQID   uint16
	CID    uint16
	Status Status
}

// Unmarshal decodes b (at least 16 bytes).
func (c *CQE) Unmarshal(b []byte) {
	_ = b[15]
	le := binary.LittleEndian
	c.DW0 = le.Uint32(b[0:])
	c.DW1 = le.Uint32(b[4:])
	c.SQHD = le.Uint16(b[8:])
	c.SQID = le.Uint16(b[10:])
	c.CID = le.Uint16(b[12:])
	c.Status = StatusFromWire(le.Uint16(b[14:]))
}

// Marshal encodes c into b (at least 16 bytes).
func (c *CQE) Marshal(b []byte) {
	_ = b[15]
	le := binary.LittleEndian
	le.PutUint32(b[0:], c.DW0)
	le.PutUint32(b[4:], c.DW1)
	le.PutUint16(b[8:], c.SQHD)
	le.PutUint16(b[10:], c.SQID)
	le.PutUint16(b[12:], c.CID)
	le.PutUint16(b[14:], c.Status.Wire())
}

// Result64 returns DW1<<32 | DW0 (Property Get of an 8-byte property).
func (c *CQE) Result64() uint64 { return uint64(c.DW1)<<32 | uint64(c.DW0) }

// ConnectData is the 1024-byte data of a Fabrics Connect command.
type ConnectData struct {
	HostID  [16]byte
	CNTLID  uint16
	SubNQN  string
	HostNQN string
}

// ConnectDataSize is the size of the Connect data.
const ConnectDataSize = 1024

// Connect data field offsets (for Connect Invalid Parameters IPO).
const (
	ConnectOffCNTLID  = 16
	ConnectOffSubNQN  = 256
	ConnectOffHostNQN = 512
)

// Connect SQE field offsets (for IPO with IATTR 0).
const (
	ConnectOffQID    = 42
	ConnectOffSQSize = 44
)

// Unmarshal decodes Connect data (b must be ≥ 1024 bytes).
func (d *ConnectData) Unmarshal(b []byte) {
	_ = b[1023]
	copy(d.HostID[:], b[0:16])
	d.CNTLID = binary.LittleEndian.Uint16(b[16:])
	d.SubNQN = cString(b[256:512])
	d.HostNQN = cString(b[512:768])
}

// Marshal encodes d into b (≥ 1024 bytes, zeroed by the caller or here).
func (d *ConnectData) Marshal(b []byte) {
	clear(b[:1024])
	copy(b[0:16], d.HostID[:])
	binary.LittleEndian.PutUint16(b[16:], d.CNTLID)
	copy(b[256:511], d.SubNQN)
	copy(b[512:767], d.HostNQN)
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// Connect SQE field helpers (CDW10..CDW12).

// ConnectRecFmt returns RECFMT (CDW10 15:0).
func (c *SQE) ConnectRecFmt() uint16 { return uint16(c.CDW10) }

// ConnectQID returns QID (CDW10 31:16).
func (c *SQE) ConnectQID() uint16 { return uint16(c.CDW10 >> 16) }

// ConnectSQSize returns the 0's based SQSIZE (CDW11 15:0).
func (c *SQE) ConnectSQSize() uint16 { return uint16(c.CDW11) }

// ConnectCATTR returns the connect attributes (CDW11 23:16).
func (c *SQE) ConnectCATTR() uint8 { return uint8(c.CDW11 >> 16) }

// ConnectKATO returns KATO in milliseconds (CDW12).
func (c *SQE) ConnectKATO() uint32 { return c.CDW12 }

// CATTRDisableSQFlow disables SQ flow control.
const CATTRDisableSQFlow = 0x04
