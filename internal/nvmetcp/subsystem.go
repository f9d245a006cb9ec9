package nvmetcp

import (
	"crypto/sha256"
	"encoding/hex"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// subsystem is one exported NVM subsystem (or the discovery subsystem).
type subsystem struct {
	t         *Target
	nqn       string
	discovery bool
	dev       blockdev.Device
	bs        int
	lbaShift  uint
	nsze      uint64
	serial    string
	model     string
	nguid     [16]byte
	uuid      [16]byte
	anyHost   bool
	allowed   map[string]bool
	resv      *reservations
	snaps     SnapshotHook  // nil: no snapshot commands
	ana       atomic.Uint32 // ANA state of group 1

	mu     sync.Mutex // guards ctrls, nextID, anaChg
	ctrls  map[uint16]*controller
	nextID uint16
	anaChg uint64
}

func newSubsystem(t *Target, cfg SubsystemConfig) *subsystem {
	s := &subsystem{t: t, nqn: cfg.NQN, dev: cfg.Device, serial: cfg.Serial, model: cfg.Model,
		nguid: cfg.NGUID, uuid: cfg.UUID, anyHost: cfg.AllowAnyHost, allowed: map[string]bool{}, snaps: cfg.Snapshots,
		ctrls: map[uint16]*controller{}, nextID: t.cfg.CntlIDMin}
	for _, h := range cfg.AllowedHosts {
		s.allowed[h] = true
	}
	if s.serial == "" {
		sum := sha256.Sum256([]byte(cfg.NQN))
		s.serial = hex.EncodeToString(sum[:10])
	}
	if s.model == "" {
		s.model = "Kura"
	}
	if s.uuid == ([16]byte{}) && s.nguid == ([16]byte{}) && !s.discovery && cfg.NQN != nvme.DiscoveryNQN {
		// Linux wants unique IDs for shared namespaces: derive a stable
		// UUID (version 5 style) from the NQN, and use it as NGUID too.
		sum := sha256.Sum256([]byte("kura-ns:" + cfg.NQN))
		copy(s.uuid[:], sum[:16])
		s.uuid[6] = s.uuid[6]&0x0F | 0x50
		s.uuid[8] = s.uuid[8]&0x3F | 0x80
		s.nguid = s.uuid
	}
	if s.dev != nil {
		s.bs = s.dev.BlockSize()
		s.lbaShift = uint(bits.TrailingZeros(uint(s.bs)))
		s.nsze = uint64(s.dev.Size()) >> s.lbaShift
	}
	s.ana.Store(uint32(nvme.ANAOptimized))
	s.resv = newReservations(s, t.cfg.StateDir)
	return s
}

func (s *subsystem) hostAllowed(hostNQN string) bool {
	return s.anyHost || s.allowed[hostNQN]
}

// allocController creates a controller with a free cntlid in the target's
// range, or returns nil when the range is exhausted.
func (s *subsystem) allocController(hostNQN string, hostID [16]byte) *controller {
	s.mu.Lock()
	defer s.mu.Unlock()
	lo, hi := s.t.cfg.CntlIDMin, s.t.cfg.CntlIDMax
	n := int(hi-lo) + 1
	for i := 0; i < n; i++ {
		id := s.nextID
		if id < lo || id > hi {
			id = lo
		}
		s.nextID = id + 1
		if _, used := s.ctrls[id]; !used {
			c := newController(s, id, hostNQN, hostID)
			s.ctrls[id] = c
			return c
		}
	}
	return nil
}

func (s *subsystem) controller(id uint16) *controller {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctrls[id]
}

func (s *subsystem) forget(c *controller) {
	s.mu.Lock()
	if s.ctrls[c.id] == c {
		delete(s.ctrls, c.id)
	}
	s.mu.Unlock()
}

func (s *subsystem) controllers() []*controller {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*controller, 0, len(s.ctrls))
	for _, c := range s.ctrls {
		out = append(out, c)
	}
	return out
}

// destroyAll deletes every controller and waits (up to drainTimeout) until
// their queues have finished the commands they were executing, so the
// caller may close the device afterwards.
func (s *subsystem) destroyAll(reason string) {
	var qs []*queue
	for _, c := range s.controllers() {
		qs = append(qs, c.destroy(reason)...)
	}
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	for _, q := range qs {
		select {
		case <-q.done:
		case <-t.C:
			s.t.log.Warn("queues still busy after removing subsystem", "nqn", s.nqn)
			return
		}
	}
}

const drainTimeout = 30 * time.Second

// postAEN offers an asynchronous event to every controller that enabled it.
func (s *subsystem) postAEN(aecBit, result uint32) {
	for _, c := range s.controllers() {
		c.postAEN(aecBit, result)
	}
}

func (s *subsystem) setANA(state uint8) {
	s.mu.Lock()
	s.anaChg++
	s.mu.Unlock()
	s.ana.Store(uint32(state))
	s.postAEN(nvme.AECANA, nvme.AENResult(nvme.AENTypeNotice, nvme.AENNoticeANAChange, nvme.LogANA))
}

func (s *subsystem) info() SubsystemInfo {
	hosts := make([]string, 0, len(s.allowed))
	for h := range s.allowed {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	inf := SubsystemInfo{NQN: s.nqn, Serial: s.serial, Model: s.model, Size: s.dev.Size(), BlockSize: s.bs,
		ANAState: uint8(s.ana.Load()), AllowedHosts: hosts, AllowAnyHost: s.anyHost}
	for _, c := range s.controllers() {
		inf.Controllers = append(inf.Controllers, c.info())
	}
	slices.SortFunc(inf.Controllers, func(a, b ControllerInfo) int { return int(a.CNTLID) - int(b.CNTLID) })
	return inf
}
