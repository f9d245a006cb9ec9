package nvme

import (
	"encoding/binary"
	"fmt"
)

// Discovery log constants (LID 0x70).
const (
	DiscLogHeaderSize  = 1024
	DiscLogEntrySize   = 1024
	TrTypeTCP          = 3
	AdrFamIPv4         = 1
	AdrFamIPv6         = 2
	SubTypeReferral    = 1
	SubTypeNVMe        = 2
	SubTypeCurrentDisc = 3
	TreqSQFlowDisable  = 0x04
	TreqNotRequired    = 0x02
)

// DiscoveryEntry is one discovery log page entry.
type DiscoveryEntry struct {
	TrType  uint8
	AdrFam  uint8
	SubType uint8
	Treq    uint8
	PortID  uint16
	CNTLID  uint16
	ASQSZ   uint16
	EFlags  uint16
	TrSvcID string
	SubNQN  string
	TrAddr  string
	SecType uint8
}

// Marshal writes the entry into b (≥ 1024 bytes, zeroed first).
func (e *DiscoveryEntry) Marshal(b []byte) {
	b = b[:DiscLogEntrySize]
	clear(b)
	le := binary.LittleEndian
	b[0], b[1], b[2], b[3] = e.TrType, e.AdrFam, e.SubType, e.Treq
	le.PutUint16(b[4:], e.PortID)
	le.PutUint16(b[6:], e.CNTLID)
	le.PutUint16(b[8:], e.ASQSZ)
	le.PutUint16(b[10:], e.EFlags)
	copy(b[32:63], e.TrSvcID)
	copy(b[256:511], e.SubNQN)
	copy(b[512:767], e.TrAddr)
	b[768] = e.SecType
}

// Unmarshal parses an entry.
func (e *DiscoveryEntry) Unmarshal(b []byte) {
	_ = b[DiscLogEntrySize-1]
	le := binary.LittleEndian
	e.TrType, e.AdrFam, e.SubType, e.Treq = b[0], b[1], b[2], b[3]
	e.PortID = le.Uint16(b[4:])
	e.CNTLID = le.Uint16(b[6:])
	e.ASQSZ = le.Uint16(b[8:])
	e.EFlags = le.Uint16(b[10:])
	e.TrSvcID = cString(b[32:64])
	e.SubNQN = cString(b[256:512])
	e.TrAddr = cString(b[512:768])
	e.SecType = b[768]
}

// MarshalDiscoveryLog builds a full discovery log page.
func MarshalDiscoveryLog(genctr uint64, entries []DiscoveryEntry) []byte {
	b := make([]byte, DiscLogHeaderSize+DiscLogEntrySize*len(entries))
	binary.LittleEndian.PutUint64(b[0:], genctr)
	binary.LittleEndian.PutUint64(b[8:], uint64(len(entries)))
	for i := range entries {
		entries[i].Marshal(b[DiscLogHeaderSize+i*DiscLogEntrySize:])
	}
	return b
}

// ParseDiscoveryLog parses a discovery log page (as many entries as b holds).
func ParseDiscoveryLog(b []byte) (genctr uint64, entries []DiscoveryEntry) {
	if len(b) < 16 {
		return 0, nil
	}
	genctr = binary.LittleEndian.Uint64(b[0:])
	n := binary.LittleEndian.Uint64(b[8:])
	for i := uint64(0); i < n; i++ {
		off := DiscLogHeaderSize + int(i)*DiscLogEntrySize
		if off+DiscLogEntrySize > len(b) {
			break
		}
		var e DiscoveryEntry
		e.Unmarshal(b[off:])
		entries = append(entries, e)
	}
	return genctr, entries
}

// ANAGroup is one ANA group descriptor.
type ANAGroup struct {
	GroupID uint32
	ChgCnt  uint64
	State   uint8
	NSIDs   []uint32
}

// MarshalANALog builds an ANA log page (LID 0x0C). With groupsOnly (RGO)
// the NSID lists are omitted.
func MarshalANALog(chgcnt uint64, groups []ANAGroup, groupsOnly bool) []byte {
	size := 16
	for _, g := range groups {
		size += 32
		if !groupsOnly {
			size += 4 * len(g.NSIDs)
		}
	}
	b := make([]byte, size)
	le := binary.LittleEndian
	le.PutUint64(b[0:], chgcnt)
	le.PutUint16(b[8:], uint16(len(groups)))
	off := 16
	for _, g := range groups {
		le.PutUint32(b[off:], g.GroupID)
		n := len(g.NSIDs)
		if groupsOnly {
			n = 0
		}
		le.PutUint32(b[off+4:], uint32(n))
		le.PutUint64(b[off+8:], g.ChgCnt)
		b[off+16] = g.State & 0xF
		off += 32
		for i := 0; i < n; i++ {
			le.PutUint32(b[off:], g.NSIDs[i])
			off += 4
		}
	}
	return b
}

// UnmarshalANALog decodes an ANA log page. Every count is checked against
// the bytes present before anything is allocated, so a short or lying page
// gives an error, never a large allocation.
func UnmarshalANALog(b []byte) (chgcnt uint64, groups []ANAGroup, err error) {
	if len(b) < 16 {
		return 0, nil, fmt.Errorf("nvme: ANA log: %d bytes, need 16", len(b))
	}
	le := binary.LittleEndian
	chgcnt = le.Uint64(b[0:])
	n := int(le.Uint16(b[8:]))
	if n > (len(b)-16)/32 {
		return 0, nil, fmt.Errorf("nvme: ANA log: %d groups do not fit in %d bytes", n, len(b))
	}
	groups = make([]ANAGroup, 0, n)
	off := 16
	for i := 0; i < n; i++ {
		if len(b)-off < 32 {
			return 0, nil, fmt.Errorf("nvme: ANA log: group %d truncated", i)
		}
		g := ANAGroup{GroupID: le.Uint32(b[off:]), ChgCnt: le.Uint64(b[off+8:]), State: b[off+16] & 0xF}
		nns := le.Uint32(b[off+4:])
		off += 32
		if uint64(nns) > uint64(len(b)-off)/4 {
			return 0, nil, fmt.Errorf("nvme: ANA log: group %d lists %d namespaces beyond the page", i, nns)
		}
		g.NSIDs = make([]uint32, nns)
		for j := range g.NSIDs {
			g.NSIDs[j] = le.Uint32(b[off:])
			off += 4
		}
		groups = append(groups, g)
	}
	return chgcnt, groups, nil
}

// Command Effects log bit.
const EffectsCSUPP uint32 = 1 << 0

// GetLogPage helpers: CDW10/11/12/13 decode.

// LogPageLID returns the LID.
func (c *SQE) LogPageLID() uint8 { return uint8(c.CDW10) }

// LogPageLSP returns the log specific field (CDW10 14:8).
func (c *SQE) LogPageLSP() uint8 { return uint8(c.CDW10>>8) & 0x7F }

// LogPageRAE returns Retain Asynchronous Event.
func (c *SQE) LogPageRAE() bool { return c.CDW10&(1<<15) != 0 }

// LogPageLen returns the transfer length in bytes.
func (c *SQE) LogPageLen() uint64 {
	numd := uint64(c.CDW10>>16) | uint64(c.CDW11&0xFFFF)<<16
	return (numd + 1) * 4
}

// LogPageOffset returns LPO.
func (c *SQE) LogPageOffset() uint64 { return uint64(c.CDW13)<<32 | uint64(c.CDW12) }

// SetLogPage fills CDW10..13 for a Get Log Page of length bytes (multiple of 4).
func (c *SQE) SetLogPage(lid uint8, lsp uint8, rae bool, length uint32, offset uint64) {
	numd := length/4 - 1
	c.CDW10 = uint32(lid) | uint32(lsp&0x7F)<<8 | (numd&0xFFFF)<<16
	if rae {
		c.CDW10 |= 1 << 15
	}
	c.CDW11 = numd >> 16
	c.CDW12 = uint32(offset)
	c.CDW13 = uint32(offset >> 32)
}
