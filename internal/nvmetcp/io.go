package nvmetcp

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// execIO runs an NVM command set I/O command (NVMe NVM Command Set 1.0).
func (c *controller) execIO(s *slot) {
	sq := &s.sqe
	sub := c.s
	if !c.nsAccessible(s) {
		return
	}
	switch sq.Opcode {
	case nvme.IORead, nvme.IOWrite, nvme.IOCompare, nvme.IOWriteZeroes:
		off, n, ok := c.lbaRange(s)
		if !ok {
			return
		}
		write := sq.Opcode == nvme.IOWrite || sq.Opcode == nvme.IOWriteZeroes
		if !sub.resv.allowed(c.hostID, write) {
			s.status = nvme.StatusReservationConflict | nvme.StatusDNR
			return
		}
		if sq.Opcode != nvme.IOWriteZeroes && s.xfer != uint32(n) {
			s.status = nvme.StatusSGLInvalidLength | nvme.StatusDNR
			return
		}
		var err error
		switch sq.Opcode {
		case nvme.IORead:
			_, err = sub.dev.ReadAt(s.buf, off)
			if err == nil {
				s.c2h = s.xfer
			}
		case nvme.IOWrite:
			_, err = sub.dev.WriteAt(s.buf, off)
			if err == nil && sq.CDW12&(1<<30) != 0 { // FUA
				err = sub.dev.Flush()
			}
		case nvme.IOWriteZeroes:
			err = sub.dev.WriteZeroes(off, n)
		case nvme.IOCompare:
			err = compare(sub.dev, s, off)
		}
		if err != nil {
			s.status = ioStatus(err, write)
		}
	case nvme.IOFlush:
		if !sub.resv.allowed(c.hostID, true) {
			s.status = nvme.StatusReservationConflict | nvme.StatusDNR
			return
		}
		if err := sub.dev.Flush(); err != nil {
			s.status = ioStatus(err, true)
		}
	case nvme.IODSM:
		c.dsm(s)
	case nvme.IOResvRegister, nvme.IOResvAcquire, nvme.IOResvRelease, nvme.IOResvReport:
		sub.resv.exec(c, s)
	default:
		s.status = nvme.StatusInvalidOpcode | nvme.StatusDNR
	}
}

// nsAccessible reports whether s addresses the subsystem's namespace
// (NSID 1) in an ANA state that allows commands; otherwise it sets the
// status and returns false.
func (c *controller) nsAccessible(s *slot) bool {
	if s.sqe.NSID != 1 {
		s.status = nvme.StatusInvalidNamespace | nvme.StatusDNR
		return false
	}
	if st := c.s.anaStatus(); st != nvme.StatusSuccess {
		s.status = st
		return false
	}
	return true
}

// lbaRange returns the byte range of SLBA/NLB, or sets LBA Out of Range.
func (c *controller) lbaRange(s *slot) (off, n int64, ok bool) {
	slba, nlb := s.sqe.SLBA(), uint64(s.sqe.NLB())
	if slba >= c.s.nsze || nlb > c.s.nsze-slba {
		s.status = nvme.StatusLBARange | nvme.StatusDNR
		return 0, 0, false
	}
	return int64(slba << c.s.lbaShift), int64(nlb << c.s.lbaShift), true
}

func compare(dev blockdev.Device, s *slot, off int64) error {
	tmp := getBuf(len(s.buf))
	defer putBuf(tmp)
	if _, err := dev.ReadAt(tmp.b, off); err != nil {
		return err
	}
	if !bytes.Equal(tmp.b, s.buf) {
		s.status = nvme.StatusCompareFailure | nvme.StatusDNR
	}
	return nil
}

// dsm handles Dataset Management; only the Deallocate attribute acts
// (→ Unmap). Linux sends a 4 KiB buffer whatever NR is (facts §13.1).
func (c *controller) dsm(s *slot) {
	sq := &s.sqe
	nr := int(sq.CDW10&0xFF) + 1
	if s.xfer < uint32(16*nr) {
		s.status = nvme.StatusSGLInvalidLength | nvme.StatusDNR
		return
	}
	if sq.CDW11&(1<<2) == 0 {
		return // hints only
	}
	if !c.s.resv.allowed(c.hostID, true) {
		s.status = nvme.StatusReservationConflict | nvme.StatusDNR
		return
	}
	for i := 0; i < nr; i++ {
		r := s.buf[16*i:]
		nlb := uint64(binary.LittleEndian.Uint32(r[4:]))
		slba := binary.LittleEndian.Uint64(r[8:])
		if nlb == 0 {
			continue
		}
		if slba >= c.s.nsze || nlb > c.s.nsze-slba {
			s.status = nvme.StatusLBARange | nvme.StatusDNR
			return
		}
		if err := c.s.dev.Unmap(int64(slba<<c.s.lbaShift), int64(nlb<<c.s.lbaShift)); err != nil {
			s.status = ioStatus(err, true)
			return
		}
	}
}

// ioStatus maps a blockdev error to an NVMe status. Media errors leave DNR
// clear so the host may retry; permanent conditions set it.
func ioStatus(err error, write bool) nvme.Status {
	switch {
	case errors.Is(err, blockdev.ErrOutOfRange):
		return nvme.StatusLBARange | nvme.StatusDNR
	case errors.Is(err, blockdev.ErrMisaligned):
		return nvme.StatusInvalidField | nvme.StatusDNR
	case errors.Is(err, blockdev.ErrReadOnly):
		return nvme.StatusNSWriteProtected | nvme.StatusDNR
	case errors.Is(err, blockdev.ErrNoSpace):
		return nvme.StatusCapExceeded | nvme.StatusDNR
	case errors.Is(err, blockdev.ErrClosed):
		return nvme.StatusNSNotReady | nvme.StatusDNR
	case errors.Is(err, blockdev.ErrTimeout):
		return nvme.StatusTransientTransport
	case write:
		return nvme.StatusWriteFault
	default:
		return nvme.StatusUnrecoveredRead
	}
}

// anaStatus returns the path status for I/O in the current ANA state.
func (s *subsystem) anaStatus() nvme.Status {
	switch uint8(s.ana.Load()) {
	case nvme.ANAInaccessible:
		return nvme.StatusANAInaccessible
	case nvme.ANAPersistentLoss:
		return nvme.StatusANAPersistentLoss | nvme.StatusDNR
	case nvme.ANAChange:
		return nvme.StatusANATransition
	}
	return nvme.StatusSuccess
}
