package nvme

import (
	"encoding/binary"
	"strings"
)

// Identify CNS values (CDW10 7:0).
const (
	CNSNamespace      uint8 = 0x00
	CNSController     uint8 = 0x01
	CNSActiveNSList   uint8 = 0x02
	CNSNSDescList     uint8 = 0x03
	CNSCSINamespace   uint8 = 0x05
	CNSCSIController  uint8 = 0x06
	CNSIndepNamespace uint8 = 0x08
)

// IdentifySize is the size of every Identify data structure.
const IdentifySize = 4096

// Controller types (CNTRLTYPE).
const (
	CtrlTypeIO        = 1
	CtrlTypeDiscovery = 2
)

// ONCS bits.
const (
	ONCSCompare      uint16 = 1 << 0
	ONCSDSM          uint16 = 1 << 2
	ONCSWriteZeroes  uint16 = 1 << 3
	ONCSReservations uint16 = 1 << 5
)

// IdentifyController is the subset of the Identify Controller data
// structure (CNS 1) Kura fills in. Byte offsets are in Marshal.
type IdentifyController struct {
	VID, SSVID     uint16
	SN             string // 20 bytes, space padded
	MN             string // 40 bytes
	FR             string // 8 bytes
	RAB            uint8
	CMIC           uint8
	MDTS           uint8
	CNTLID         uint16
	VER            uint32
	OAES           uint32
	CTRATT         uint32
	CNTRLTYPE      uint8
	ACL            uint8
	AERL           uint8
	FRMW           uint8
	LPA            uint8
	ELPE           uint8
	KAS            uint16
	ANATT          uint8
	ANACAP         uint8
	ANAGRPMAX      uint32
	NANAGRPID      uint32
	SQES, CQES     uint8
	MAXCMD         uint16
	NN             uint32
	ONCS           uint16
	VWC            uint8
	SGLS           uint32
	MNAN           uint32
	SubNQN         string
	IOCCSZ, IORCSZ uint32
	ICDOFF         uint16
	MSDBD          uint8
	OFCS           uint16
}

func putPadded(b []byte, s string) {
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
}

// Marshal writes the structure into b (≥ 4096 bytes, zeroed first).
func (c *IdentifyController) Marshal(b []byte) {
	b = b[:IdentifySize]
	clear(b)
	le := binary.LittleEndian
	le.PutUint16(b[0:], c.VID)
	le.PutUint16(b[2:], c.SSVID)
	putPadded(b[4:24], c.SN)
	putPadded(b[24:64], c.MN)
	putPadded(b[64:72], c.FR)
	b[72] = c.RAB
	b[76] = c.CMIC
	b[77] = c.MDTS
	le.PutUint16(b[78:], c.CNTLID)
	le.PutUint32(b[80:], c.VER)
	le.PutUint32(b[92:], c.OAES)
	le.PutUint32(b[96:], c.CTRATT)
	b[111] = c.CNTRLTYPE
	b[258] = c.ACL
	b[259] = c.AERL
	b[260] = c.FRMW
	b[261] = c.LPA
	b[262] = c.ELPE
	le.PutUint16(b[320:], c.KAS)
	b[342] = c.ANATT
	b[343] = c.ANACAP
	le.PutUint32(b[344:], c.ANAGRPMAX)
	le.PutUint32(b[348:], c.NANAGRPID)
	b[512] = c.SQES
	b[513] = c.CQES
	le.PutUint16(b[514:], c.MAXCMD)
	le.PutUint32(b[516:], c.NN)
	le.PutUint16(b[520:], c.ONCS)
	b[525] = c.VWC
	le.PutUint32(b[536:], c.SGLS)
	le.PutUint32(b[540:], c.MNAN)
	copy(b[768:1023], c.SubNQN)
	le.PutUint32(b[1792:], c.IOCCSZ)
	le.PutUint32(b[1796:], c.IORCSZ)
	le.PutUint16(b[1800:], c.ICDOFF)
	b[1803] = c.MSDBD
	le.PutUint16(b[1804:], c.OFCS)
}

// Unmarshal parses the fields Marshal writes.
func (c *IdentifyController) Unmarshal(b []byte) {
	_ = b[IdentifySize-1]
	le := binary.LittleEndian
	c.VID = le.Uint16(b[0:])
	c.SSVID = le.Uint16(b[2:])
	c.SN = strings.TrimRight(string(b[4:24]), " \x00")
	c.MN = strings.TrimRight(string(b[24:64]), " \x00")
	c.FR = strings.TrimRight(string(b[64:72]), " \x00")
	c.RAB = b[72]
	c.CMIC = b[76]
	c.MDTS = b[77]
	c.CNTLID = le.Uint16(b[78:])
	c.VER = le.Uint32(b[80:])
	c.OAES = le.Uint32(b[92:])
	c.CTRATT = le.Uint32(b[96:])
	c.CNTRLTYPE = b[111]
	c.ACL, c.AERL, c.FRMW, c.LPA, c.ELPE = b[258], b[259], b[260], b[261], b[262]
	c.KAS = le.Uint16(b[320:])
	c.ANATT, c.ANACAP = b[342], b[343]
	c.ANAGRPMAX = le.Uint32(b[344:])
	c.NANAGRPID = le.Uint32(b[348:])
	c.SQES, c.CQES = b[512], b[513]
	c.MAXCMD = le.Uint16(b[514:])
	c.NN = le.Uint32(b[516:])
	c.ONCS = le.Uint16(b[520:])
	c.VWC = b[525]
	c.SGLS = le.Uint32(b[536:])
	c.MNAN = le.Uint32(b[540:])
	c.SubNQN = cString(b[768:1024])
	c.IOCCSZ = le.Uint32(b[1792:])
	c.IORCSZ = le.Uint32(b[1796:])
	c.ICDOFF = le.Uint16(b[1800:])
	c.MSDBD = b[1803]
	c.OFCS = le.Uint16(b[1804:])
}

// IdentifyNamespace is the subset of Identify Namespace (CNS 0) Kura uses.
// It always describes exactly one LBA format (index 0).
type IdentifyNamespace struct {
	NSZE, NCAP, NUSE uint64
	NSFEAT           uint8
	NMIC             uint8
	RESCAP           uint8
	DLFEAT           uint8
	NOWS             uint16
	ANAGRPID         uint32
	NSATTR           uint8
	NGUID            [16]byte
	EUI64            [8]byte
	LBADS            uint8 // log2 of the block size
}

// Marshal writes the structure into b (≥ 4096 bytes, zeroed first).
func (n *IdentifyNamespace) Marshal(b []byte) {
	b = b[:IdentifySize]
	clear(b)
	le := binary.LittleEndian
	le.PutUint64(b[0:], n.NSZE)
	le.PutUint64(b[8:], n.NCAP)
	le.PutUint64(b[16:], n.NUSE)
	b[24] = n.NSFEAT
	b[25] = 0 // NLBAF: one format
	b[26] = 0 // FLBAS: format 0
	b[30] = n.NMIC
	b[31] = n.RESCAP
	b[33] = n.DLFEAT
	le.PutUint16(b[72:], n.NOWS)
	le.PutUint32(b[92:], n.ANAGRPID)
	b[99] = n.NSATTR
	copy(b[104:120], n.NGUID[:])
	copy(b[120:128], n.EUI64[:])
	b[128+2] = n.LBADS
}

// Unmarshal parses the fields Marshal writes; LBADS comes from the format
// selected by FLBAS.
func (n *IdentifyNamespace) Unmarshal(b []byte) {
	_ = b[IdentifySize-1]
	le := binary.LittleEndian
	n.NSZE = le.Uint64(b[0:])
	n.NCAP = le.Uint64(b[8:])
	n.NUSE = le.Uint64(b[16:])
	n.NSFEAT = b[24]
	n.NMIC = b[30]
	n.RESCAP = b[31]
	n.DLFEAT = b[33]
	n.NOWS = le.Uint16(b[72:])
	n.ANAGRPID = le.Uint32(b[92:])
	n.NSATTR = b[99]
	copy(n.NGUID[:], b[104:120])
	copy(n.EUI64[:], b[120:128])
	idx := int(b[26] & 0xF)
	if idx > int(b[25]) || idx >= 64 {
		idx = 0
	}
	n.LBADS = b[128+4*idx+2]
}

// Namespace identification descriptor types (CNS 3).
const (
	NIDTEUI64 uint8 = 1
	NIDTNGUID uint8 = 2
	NIDTUUID  uint8 = 3
	NIDTCSI   uint8 = 4
)

// NSDescriptor is one namespace identification descriptor.
type NSDescriptor struct {
	Type uint8
	ID   []byte
}

// MarshalNSDescList writes the descriptors into b (4096 bytes, zeroed first).
// All-zero IDs are skipped (they mean "no ID").
func MarshalNSDescList(b []byte, descs ...NSDescriptor) {
	b = b[:IdentifySize]
	clear(b)
	off := 0
	for _, d := range descs {
		if isZero(d.ID) && d.Type != NIDTCSI {
			continue
		}
		if off+4+len(d.ID) > len(b) {
			return
		}
		b[off] = d.Type
		b[off+1] = uint8(len(d.ID))
		copy(b[off+4:], d.ID)
		off += 4 + len(d.ID)
	}
}

// ParseNSDescList parses a descriptor list.
func ParseNSDescList(b []byte) []NSDescriptor {
	var out []NSDescriptor
	for off := 0; off+4 <= len(b); {
		t, l := b[off], int(b[off+1])
		if l == 0 || off+4+l > len(b) {
			break
		}
		out = append(out, NSDescriptor{Type: t, ID: append([]byte(nil), b[off+4:off+4+l]...)})
		off += 4 + l
	}
	return out
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// MarshalNSList writes an active namespace list (CNS 2): the NSIDs > after,
// ascending, zero-terminated, at most 1024.
func MarshalNSList(b []byte, after uint32, nsids []uint32) {
	b = b[:IdentifySize]
	clear(b)
	i := 0
	for _, id := range nsids {
		if id > after && i < 1024 {
			binary.LittleEndian.PutUint32(b[4*i:], id)
			i++
		}
	}
}
