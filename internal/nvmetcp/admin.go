package nvmetcp

import (
	"encoding/binary"
	"time"

	"github.com/kura-io/kura/internal/nvme"
)

// execAdmin runs an admin command. It returns true when the command is held
// (an AER waiting for an event); the caller completes it otherwise.
func (c *controller) execAdmin(s *slot) (held bool) {
	sq := &s.sqe
	if !c.ready() {
		s.status = nvme.StatusCmdSeqError | nvme.StatusDNR
		return false
	}
	c.keepAlive() // any admin command proves the host is alive
	switch sq.Opcode {
	case nvme.AdminIdentify:
		c.identify(s)
	case nvme.AdminGetLogPage:
		c.getLogPage(s)
	case nvme.AdminSetFeatures:
		c.setFeatures(s)
	case nvme.AdminGetFeatures:
		c.getFeatures(s)
	case nvme.AdminAsyncEvent:
		return c.addAER(s)
	case nvme.AdminKeepAlive:
		c.mu.Lock()
		kato := c.kato
		c.mu.Unlock()
		if kato == 0 {
			s.status = nvme.StatusKATOInvalid | nvme.StatusDNR
		}
	case nvme.AdminAbort:
		s.dw0 = 1 // not aborted
	case OpcodeCreateSnapshot, OpcodeSnapshotInfo, OpcodeDestroySnapshot:
		c.snapshotCmd(s)
	default:
		s.status = nvme.StatusInvalidOpcode | nvme.StatusDNR
	}
	return false
}

// needC2H checks that the command moves exactly n bytes to the host and
// returns the buffer to fill.
func needC2H(s *slot, n uint32) []byte {
	if s.xfer != n || s.dir != nvme.DirCtrlToHost {
		s.status = nvme.StatusSGLInvalidLength | nvme.StatusDNR
		return nil
	}
	s.c2h = n
	return s.buf[:n]
}

func (c *controller) identify(s *slot) {
	sq := &s.sqe
	cns := uint8(sq.CDW10)
	b := needC2H(s, nvme.IdentifySize)
	if b == nil {
		return
	}
	s.c2h = 0 // set again below once the page is valid
	disc := c.s.discovery
	switch {
	case cns == nvme.CNSController:
		s.c2h = nvme.IdentifySize
		id := c.identifyController()
		id.Marshal(b)
	case disc:
		s.status = nvme.StatusInvalidField | nvme.StatusDNR
	case cns == nvme.CNSNamespace:
		if !c.validNSID(s, sq.NSID) {
			return
		}
		s.c2h = nvme.IdentifySize
		id := c.identifyNamespace()
		id.Marshal(b)
	case cns == nvme.CNSActiveNSList:
		if sq.NSID >= 0xFFFFFFFE {
			s.status = nvme.StatusInvalidField | nvme.StatusDNR
			return
		}
		s.c2h = nvme.IdentifySize
		nvme.MarshalNSList(b, sq.NSID, []uint32{1})
	case cns == nvme.CNSNSDescList:
		if !c.validNSID(s, sq.NSID) {
			return
		}
		s.c2h = nvme.IdentifySize
		nvme.MarshalNSDescList(b,
			nvme.NSDescriptor{Type: nvme.NIDTNGUID, ID: c.s.nguid[:]},
			nvme.NSDescriptor{Type: nvme.NIDTUUID, ID: c.s.uuid[:]},
			nvme.NSDescriptor{Type: nvme.NIDTCSI, ID: []byte{0}})
	case cns == nvme.CNSCSIController && uint8(sq.CDW11>>24) == 0:
		s.c2h = nvme.IdentifySize
		clear(b) // NVM: no limits reported
	case cns == nvme.CNSCSINamespace && uint8(sq.CDW11>>24) == 0:
		if !c.validNSID(s, sq.NSID) {
			return
		}
		s.c2h = nvme.IdentifySize
		clear(b)
	default:
		s.status = nvme.StatusInvalidField | nvme.StatusDNR
	}
}

func (c *controller) validNSID(s *slot, nsid uint32) bool {
	if nsid != 1 {
		s.status = nvme.StatusInvalidNamespace | nvme.StatusDNR
		return false
	}
	return true
}

// identifyController fills Identify Controller (nvme-tcp-facts §8.1).
func (c *controller) identifyController() nvme.IdentifyController {
	id := nvme.IdentifyController{
		SN: c.s.serial, MN: c.s.model, FR: "kura", RAB: 6, CNTLID: c.id, VER: nvme.Version(1, 3, 0),
		CTRATT: 1, SQES: 0x66, CQES: 0x44, MAXCMD: mqes + 1, SGLS: 0x100001, SubNQN: c.s.nqn,
		IOCCSZ: ioccsz, IORCSZ: 1, MSDBD: 1, AERL: aerLimit - 1, ELPE: 0, LPA: 0x06, MDTS: mdts,
	}
	if c.s.discovery {
		id.CNTRLTYPE = nvme.CtrlTypeDiscovery
		id.OAES = nvme.AECDiscLog
		id.MDTS = 0
		id.KAS = 10
		return id
	}
	id.CNTRLTYPE = nvme.CtrlTypeIO
	id.CMIC = 0x0B // multi-port, multi-controller, ANA reporting
	id.OAES = nvme.AECNSAttr | nvme.AECANA
	id.KAS = 10 // 1 s granularity
	id.ANATT, id.ANACAP, id.ANAGRPMAX, id.NANAGRPID = 10, 0x1F, 1, 1
	id.NN, id.MNAN = 1, 1
	id.ONCS = nvme.ONCSCompare | nvme.ONCSDSM | nvme.ONCSWriteZeroes | nvme.ONCSReservations
	id.VWC = 1
	id.OFCS = 1
	return id
}

func (c *controller) identifyNamespace() nvme.IdentifyNamespace {
	n := c.s.nsze
	return nvme.IdentifyNamespace{NSZE: n, NCAP: n, NUSE: n, NMIC: 1, RESCAP: 0x7F, ANAGRPID: 1,
		NGUID: c.s.nguid, LBADS: uint8(c.s.lbaShift)}
}

// getLogPage returns the requested window of a log page (NVMe Base 2.0
// §5.16), zero-filled past its end.
func (c *controller) getLogPage(s *slot) {
	sq := &s.sqe
	n, off := sq.LogPageLen(), sq.LogPageOffset()
	if n != uint64(s.xfer) || s.dir != nvme.DirCtrlToHost {
		s.status = nvme.StatusSGLInvalidLength | nvme.StatusDNR
		return
	}
	if off%4 != 0 {
		s.status = nvme.StatusInvalidField | nvme.StatusDNR
		return
	}
	var page []byte
	lid := sq.LogPageLID()
	switch {
	case lid == nvme.LogDiscovery && c.s.discovery:
		page = c.s.t.discoveryLog(c)
	case c.s.discovery:
		s.status = nvme.StatusInvalidLogPage | nvme.StatusDNR
		return
	case lid == nvme.LogError || lid == nvme.LogFirmware:
		page = make([]byte, 512)
	case lid == nvme.LogSMART:
		page = c.smartLog()
	case lid == nvme.LogChangedNS:
		page = make([]byte, 4096)
	case lid == nvme.LogCmdEffects:
		page = commandEffects
		if c.s.snaps != nil {
			page = snapshotEffects
		}
	case lid == nvme.LogANA:
		c.s.mu.Lock()
		chg := c.s.anaChg
		c.s.mu.Unlock()
		page = nvme.MarshalANALog(chg, []nvme.ANAGroup{{GroupID: 1, ChgCnt: chg, State: uint8(c.s.ana.Load()), NSIDs: []uint32{1}}},
			sq.LogPageLSP()&1 != 0)
	case lid == nvme.LogResvNotice:
		page = c.takeResvNotice(sq.LogPageRAE(), off == 0)
	default:
		s.status = nvme.StatusInvalidLogPage | nvme.StatusDNR
		return
	}
	if off > uint64(len(page)) {
		s.status = nvme.StatusInvalidField | nvme.StatusDNR
		return
	}
	b := needC2H(s, uint32(n))
	k := copy(b, page[off:])
	clear(b[k:])
}

var commandEffects = func() []byte {
	b := make([]byte, 4096)
	for _, op := range []uint8{nvme.AdminGetLogPage, nvme.AdminIdentify, nvme.AdminAbort, nvme.AdminSetFeatures,
		nvme.AdminGetFeatures, nvme.AdminAsyncEvent, nvme.AdminKeepAlive} {
		binary.LittleEndian.PutUint32(b[4*int(op):], nvme.EffectsCSUPP)
	}
	for _, op := range []uint8{nvme.IOFlush, nvme.IOWrite, nvme.IORead, nvme.IOCompare, nvme.IOWriteZeroes, nvme.IODSM,
		nvme.IOResvRegister, nvme.IOResvReport, nvme.IOResvAcquire, nvme.IOResvRelease} {
		v := nvme.EffectsCSUPP
		if op != nvme.IORead && op != nvme.IOCompare && op != nvme.IOResvReport {
			v |= 1 << 1 // LBCC
		}
		binary.LittleEndian.PutUint32(b[1024+4*int(op):], v)
	}
	return b
}()

func (c *controller) smartLog() []byte {
	b := make([]byte, 512)
	binary.LittleEndian.PutUint16(b[1:], 273+35) // 35 °C in Kelvin
	b[3], b[4] = 100, 10                         // available spare, threshold
	return b
}

func (c *controller) setFeatures(s *slot) {
	sq := &s.sqe
	if sq.CDW10&(1<<31) != 0 {
		s.status = nvme.StatusFeatureNotSaveable | nvme.StatusDNR
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch fid := uint8(sq.CDW10); {
	case fid == nvme.FeatNumQueues && !c.s.discovery:
		nsqr, ncqr := uint16(sq.CDW11), uint16(sq.CDW11>>16)
		if nsqr == 0xFFFF || ncqr == 0xFFFF {
			s.status = nvme.StatusInvalidField | nvme.StatusDNR
			return
		}
		n := min(nsqr, ncqr) + 1
		c.nrIOQ = min(n, maxIOQueues)
		s.dw0 = uint32(c.nrIOQ-1) | uint32(c.nrIOQ-1)<<16
	case fid == nvme.FeatAsyncEvent:
		mask := nvme.AECNSAttr | nvme.AECANA
		if c.s.discovery {
			mask = nvme.AECDiscLog
		}
		c.aec = sq.CDW11 & mask
		s.dw0 = c.aec
	case fid == nvme.FeatKeepAlive:
		c.mu.Unlock()
		c.setKATO(time.Duration(sq.CDW11) * time.Millisecond)
		c.mu.Lock()
	case fid == nvme.FeatVolatileWC && !c.s.discovery:
		c.wce = sq.CDW11&1 != 0
	case fid == nvme.FeatResvMask && !c.s.discovery:
		if sq.NSID != 1 && sq.NSID != 0xFFFFFFFF {
			s.status = nvme.StatusInvalidNamespace | nvme.StatusDNR
			return
		}
		c.resv.mask = sq.CDW11 & nvme.ResvNoticeMaskAll
	case fid == nvme.FeatTimestamp || fid == nvme.FeatHostBehavior:
		// accepted and ignored
	default:
		s.status = nvme.StatusInvalidField | nvme.StatusDNR
	}
}

func (c *controller) getFeatures(s *slot) {
	sq := &s.sqe
	sel := sq.CDW10 >> 8 & 7
	c.mu.Lock()
	defer c.mu.Unlock()
	switch fid := uint8(sq.CDW10); {
	case sel == 3: // supported capabilities: changeable, not saveable
		s.dw0 = 1 << 2
	case fid == nvme.FeatNumQueues && !c.s.discovery:
		s.dw0 = uint32(c.nrIOQ-1) | uint32(c.nrIOQ-1)<<16
	case fid == nvme.FeatAsyncEvent:
		s.dw0 = c.aec
	case fid == nvme.FeatKeepAlive:
		s.dw0 = uint32(c.kato / time.Millisecond)
	case fid == nvme.FeatVolatileWC && !c.s.discovery:
		if c.wce {
			s.dw0 = 1
		}
	case fid == nvme.FeatResvMask && !c.s.discovery:
		if sq.NSID != 1 && sq.NSID != 0xFFFFFFFF {
			s.status = nvme.StatusInvalidNamespace | nvme.StatusDNR
			return
		}
		s.dw0 = c.resv.mask
	case fid == nvme.FeatHostID && !c.s.discovery:
		if sq.CDW11&1 == 0 {
			s.status = nvme.StatusInvalidField | nvme.StatusDNR
			return
		}
		if b := needC2H(s, 16); b != nil {
			copy(b, c.hostID[:])
		}
	default:
		s.status = nvme.StatusInvalidField | nvme.StatusDNR
	}
}
