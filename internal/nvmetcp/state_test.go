package nvmetcp

import (
	"encoding/binary"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// These tests drive the controller state machine directly, without
// sockets. Reference: NVMe-oF 1.1 §3.3 (Connect), §3.4-3.5 (properties),
// NVMe Base 2.0 §5.15 (Identify), nvme-tcp-facts §6, §8, §16.

func newStateTarget(t *testing.T, cfg TargetConfig) *Target {
	t.Helper()
	cfg.Logger = quietLogger()
	tg, err := NewTarget(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dev, _ := blockdev.NewMalloc("s", 1<<20, 512)
	if err := tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("s"), Device: dev, AllowedHosts: []string{testHost},
		UUID: [16]byte{0xAA, 1}, NGUID: [16]byte{0xBB, 2}}); err != nil {
		t.Fatal(err)
	}
	return tg
}

func connectSQE(qid, sqsize uint16, kato uint32) nvme.SQE {
	return nvme.SQE{Opcode: nvme.OpcodeFabrics, Flags: 0x40, NSID: uint32(nvme.FabricsConnect),
		SGL: nvme.SGL{ID: nvme.SGLDataBlockOffset, Length: 1024}, CDW10: uint32(qid) << 16, CDW11: uint32(sqsize), CDW12: kato}
}

func connectData(sub, host string, cntlid uint16) []byte {
	b := make([]byte, 1024)
	cd := nvme.ConnectData{HostID: [16]byte{7}, CNTLID: cntlid, SubNQN: sub, HostNQN: host}
	cd.Marshal(b)
	return b
}

func TestConnectStateMachine(t *testing.T) {
	tg := newStateTarget(t, TargetConfig{CntlIDMin: 10, CntlIDMax: 11})
	ok := func(*controller) bool { return true }
	sub := NQNFor("s")
	cases := []struct {
		name   string
		sqe    nvme.SQE
		data   []byte
		status nvme.Status
		dw0    uint32
	}{
		{"unknown subsystem", connectSQE(0, 31, 5000), connectData(NQNFor("nope"), testHost, 0xFFFF), nvme.StatusConnectInvalidParm | nvme.StatusDNR, 1<<16 | 256},
		{"record format", func() nvme.SQE { s := connectSQE(0, 31, 0); s.CDW10 |= 1; return s }(), connectData(sub, testHost, 0xFFFF), nvme.StatusConnectIncompatFmt | nvme.StatusDNR, 0},
		{"host not allowed", connectSQE(0, 31, 0), connectData(sub, "nqn.2014-08.org.nvmexpress:uuid:other", 0xFFFF), nvme.StatusConnectInvalidHost | nvme.StatusDNR, 1<<16 | 512},
		{"admin cntlid not dynamic", connectSQE(0, 31, 0), connectData(sub, testHost, 5), nvme.StatusConnectInvalidParm | nvme.StatusDNR, 1<<16 | 16},
		{"sqsize zero", connectSQE(0, 0, 0), connectData(sub, testHost, 0xFFFF), nvme.StatusConnectInvalidParm | nvme.StatusDNR, 44},
		{"sqsize beyond MQES", connectSQE(1, 1024, 0), connectData(sub, testHost, 10), nvme.StatusConnectInvalidParm | nvme.StatusDNR, 44},
		{"io queue unknown controller", connectSQE(1, 127, 0), connectData(sub, testHost, 10), nvme.StatusConnectInvalidParm | nvme.StatusDNR, 1<<16 | 16},
		{"short data", connectSQE(0, 31, 0), make([]byte, 100), nvme.StatusSGLInvalidLength | nvme.StatusDNR, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := tg.connectLogic(&c.sqe, c.data, ok)
			if r.status != c.status || r.dw0 != c.dw0 {
				t.Fatalf("got %v dw0 %#x, want %v dw0 %#x", r.status, r.dw0, c.status, c.dw0)
			}
		})
	}

	// Admin connects allocate cntlids inside the configured range.
	a := tg.connectLogic(ptr(connectSQE(0, 31, 5000)), connectData(sub, testHost, 0xFFFF), ok)
	b := tg.connectLogic(ptr(connectSQE(0, 31, 5000)), connectData(sub, testHost, 0xFFFF), ok)
	if !a.status.OK() || !b.status.OK() || a.dw0 != 10 || b.dw0 != 11 {
		t.Fatalf("cntlids %d %d (%v %v), want 10 11", a.dw0, b.dw0, a.status, b.status)
	}
	if r := tg.connectLogic(ptr(connectSQE(0, 31, 5000)), connectData(sub, testHost, 0xFFFF), ok); r.status != nvme.StatusConnectCtrlBusy|nvme.StatusDNR {
		t.Fatalf("range exhausted: %v", r.status)
	}
	ctrl := a.ctrl
	// I/O queue before CC.EN → Command Sequence Error.
	if r := tg.connectLogic(ptr(connectSQE(1, 127, 0)), connectData(sub, testHost, 10), ok); r.status != nvme.StatusCmdSeqError|nvme.StatusDNR {
		t.Fatalf("io connect before enable: %v", r.status)
	}
	ctrl.mu.Lock()
	ctrl.setCC(0x00460001)
	ctrl.nrIOQ = 2
	ctrl.mu.Unlock()
	if r := tg.connectLogic(ptr(connectSQE(3, 127, 0)), connectData(sub, testHost, 10), ok); r.status != nvme.StatusConnectInvalidParm|nvme.StatusDNR || r.dw0 != 42 {
		t.Fatalf("qid beyond granted queues: %v %#x", r.status, r.dw0)
	}
	if r := tg.connectLogic(ptr(connectSQE(1, 127, 0)), connectData(sub, "nqn.2014-08.org.nvmexpress:uuid:other", 10), ok); r.status.Code() != nvme.StatusConnectInvalidHost {
		t.Fatalf("io connect from other host: %v", r.status)
	}
	if r := tg.connectLogic(ptr(connectSQE(2, 127, 0)), connectData(sub, testHost, 10), ok); !r.status.OK() || r.dw0 != 10 {
		t.Fatalf("io connect: %v %#x", r.status, r.dw0)
	}
	if r := tg.connectLogic(ptr(connectSQE(2, 127, 0)), connectData(sub, testHost, 10), func(*controller) bool { return false }); r.status != nvme.StatusCmdSeqError|nvme.StatusDNR {
		t.Fatalf("qid already connected: %v", r.status)
	}
	ctrl.destroy("test")
	b.ctrl.destroy("test")
}

func ptr[T any](v T) *T { return &v }

// testSlot builds a command slot as the queue layer would.
func testSlot(sqe nvme.SQE, data []byte, xfer int) *slot {
	s := &slot{sqe: sqe}
	if sqe.Opcode == nvme.OpcodeFabrics {
		s.dir = nvme.FabricsDirection(sqe.FCType())
	} else {
		s.dir = nvme.Direction(sqe.Opcode)
	}
	if data != nil {
		s.buf = data
		s.xfer = uint32(len(data))
	} else if xfer > 0 {
		s.buf = make([]byte, xfer)
		s.xfer = uint32(xfer)
	}
	return s
}

func newCtrl(t *testing.T, tg *Target, sub string) *controller {
	t.Helper()
	r := tg.connectLogic(ptr(connectSQE(0, 31, 0)), connectData(sub, testHost, 0xFFFF), func(*controller) bool { return true })
	if !r.status.OK() {
		t.Fatal(r.status)
	}
	t.Cleanup(func() { r.ctrl.destroy("test") })
	return r.ctrl
}

func propGet(c *controller, off uint32, size8 bool) (uint64, nvme.Status) {
	sqe := nvme.SQE{Opcode: nvme.OpcodeFabrics, NSID: uint32(nvme.FabricsPropertyGet), CDW11: off}
	if size8 {
		sqe.CDW10 = 1
	}
	s := testSlot(sqe, nil, 0)
	c.property(s)
	return uint64(s.dw1)<<32 | uint64(s.dw0), s.status
}

func propSet(c *controller, off uint32, v uint32) nvme.Status {
	s := testSlot(nvme.SQE{Opcode: nvme.OpcodeFabrics, NSID: uint32(nvme.FabricsPropertySet), CDW11: off, CDW12: v}, nil, 0)
	c.property(s)
	return s.status
}

func TestPropertyHandshake(t *testing.T) {
	tg := newStateTarget(t, TargetConfig{})
	c := newCtrl(t, tg, NQNFor("s"))
	// Linux 6.1 sequence (nvme-tcp-facts §6.3).
	capv, st := propGet(c, nvme.PropCAP, true)
	if !st.OK() || capv != capValue || nvme.DecodeCAP(capv).MQES != 1023 || nvme.DecodeCAP(capv).MPSMIN != 0 {
		t.Fatalf("CAP %#x %v", capv, st)
	}
	if _, st := propGet(c, nvme.PropCAP, false); st != nvme.StatusInvalidField|nvme.StatusDNR {
		t.Fatalf("CAP with 4-byte size: %v", st)
	}
	// Admin commands before enable fail.
	s := testSlot(nvme.SQE{Opcode: nvme.AdminIdentify, CDW10: 1}, nil, 4096)
	c.execAdmin(s)
	if s.status != nvme.StatusCmdSeqError|nvme.StatusDNR {
		t.Fatalf("identify before enable: %v", s.status)
	}
	propSet(c, nvme.PropCC, 0x00460000)
	if v, _ := propGet(c, nvme.PropCC, false); v != 0x00460000 {
		t.Fatalf("CC read-back %#x", v)
	}
	propSet(c, nvme.PropCC, 0x00460001)
	if v, _ := propGet(c, nvme.PropCSTS, false); v != 1 {
		t.Fatalf("CSTS after enable %#x, want RDY", v)
	}
	if v, _ := propGet(c, nvme.PropVS, false); v != 0x10300 {
		t.Fatalf("VS %#x", v)
	}
	if st := propSet(c, nvme.PropCSTS, 1); st != nvme.StatusInvalidField|nvme.StatusDNR {
		t.Fatalf("write to CSTS: %v", st)
	}
	// Shutdown: CC.SHN=1 → SHST complete (CSTS 0x8).
	propSet(c, nvme.PropCC, 0x00464001)
	if v, _ := propGet(c, nvme.PropCSTS, false); v != 0x8 {
		t.Fatalf("CSTS after shutdown %#x, want 0x8", v)
	}
	// Bad queue entry sizes → CFS.
	c2 := newCtrl(t, tg, NQNFor("s"))
	propSet(c2, nvme.PropCC, 0x00450001)
	if v, _ := propGet(c2, nvme.PropCSTS, false); v&uint64(nvme.CSTSFatal) == 0 {
		t.Fatalf("CSTS with IOCQES 5: %#x, want CFS", v)
	}
}

func enabled(t *testing.T, tg *Target, sub string) *controller {
	c := newCtrl(t, tg, sub)
	propSet(c, nvme.PropCC, 0x00460001)
	return c
}

func admin(c *controller, sqe nvme.SQE, xfer int) *slot {
	s := testSlot(sqe, nil, xfer)
	c.execAdmin(s)
	return s
}

func TestIdentifyAndLogs(t *testing.T) {
	tg := newStateTarget(t, TargetConfig{})
	c := enabled(t, tg, NQNFor("s"))
	s := admin(c, nvme.SQE{Opcode: nvme.AdminIdentify, CDW10: 1}, 4096)
	var id nvme.IdentifyController
	id.Unmarshal(s.buf)
	if !s.status.OK() || s.c2h != 4096 || id.CNTLID != c.id || id.SubNQN != NQNFor("s") || id.KAS == 0 || id.SGLS&3 == 0 ||
		id.IOCCSZ < 4 || id.ICDOFF != 0 || id.MAXCMD == 0 || id.NN != 1 || id.CNTRLTYPE != 1 || id.MNAN == 0 || id.MNAN > id.NN {
		t.Fatalf("identify controller %v %+v", s.status, id)
	}
	s = admin(c, nvme.SQE{Opcode: nvme.AdminIdentify, CDW10: 1}, 512)
	if s.status != nvme.StatusSGLInvalidLength|nvme.StatusDNR {
		t.Fatalf("identify with 512 bytes: %v", s.status)
	}
	s = admin(c, nvme.SQE{Opcode: nvme.AdminIdentify, NSID: 1, CDW10: 0}, 4096)
	var ns nvme.IdentifyNamespace
	ns.Unmarshal(s.buf)
	if !s.status.OK() || ns.NSZE != 2048 || ns.NCAP != 2048 || ns.LBADS != 9 || ns.ANAGRPID != 1 || ns.NGUID[0] != 0xBB {
		t.Fatalf("identify ns %v %+v", s.status, ns)
	}
	if s = admin(c, nvme.SQE{Opcode: nvme.AdminIdentify, NSID: 2, CDW10: 0}, 4096); s.status != nvme.StatusInvalidNamespace|nvme.StatusDNR {
		t.Fatalf("identify nsid 2: %v", s.status)
	}
	s = admin(c, nvme.SQE{Opcode: nvme.AdminIdentify, CDW10: 2}, 4096)
	if binary.LittleEndian.Uint32(s.buf) != 1 || binary.LittleEndian.Uint32(s.buf[4:]) != 0 {
		t.Fatalf("ns list % x", s.buf[:8])
	}
	s = admin(c, nvme.SQE{Opcode: nvme.AdminIdentify, NSID: 1, CDW10: 2}, 4096)
	if binary.LittleEndian.Uint32(s.buf) != 0 {
		t.Fatalf("ns list after 1: % x", s.buf[:8])
	}
	s = admin(c, nvme.SQE{Opcode: nvme.AdminIdentify, NSID: 1, CDW10: 3}, 4096)
	d := nvme.ParseNSDescList(s.buf)
	if len(d) != 3 || d[0].Type != nvme.NIDTNGUID || d[1].Type != nvme.NIDTUUID || d[1].ID[0] != 0xAA || d[2].Type != nvme.NIDTCSI {
		t.Fatalf("desc list %+v", d)
	}
	if s = admin(c, nvme.SQE{Opcode: nvme.AdminIdentify, CDW10: 0x1F}, 4096); s.status != nvme.StatusInvalidField|nvme.StatusDNR {
		t.Fatalf("unknown CNS: %v", s.status)
	}
	// ANA log as Linux reads it: NSID all-ones, 16+32+4 bytes.
	var sqe nvme.SQE
	sqe.Opcode, sqe.NSID = nvme.AdminGetLogPage, 0xFFFFFFFF
	sqe.SetLogPage(nvme.LogANA, 0, false, 52, 0)
	s = admin(c, sqe, 52)
	if !s.status.OK() || binary.LittleEndian.Uint16(s.buf[8:]) != 1 || s.buf[16+16] != nvme.ANAOptimized || binary.LittleEndian.Uint32(s.buf[48:]) != 1 {
		t.Fatalf("ANA log %v % x", s.status, s.buf)
	}
	sqe.SetLogPage(nvme.LogCmdEffects, 0, false, 4096, 0)
	if s = admin(c, sqe, 4096); !s.status.OK() || s.buf[4*int(nvme.AdminIdentify)]&1 == 0 || s.buf[1024+4*int(nvme.IOWrite)]&1 == 0 {
		t.Fatalf("effects log %v", s.status)
	}
	sqe.SetLogPage(0x42, 0, false, 512, 0)
	if s = admin(c, sqe, 512); s.status != nvme.StatusInvalidLogPage|nvme.StatusDNR {
		t.Fatalf("unknown log: %v", s.status)
	}
	sqe.SetLogPage(nvme.LogSMART, 0, false, 512, 4096)
	if s = admin(c, sqe, 512); s.status != nvme.StatusInvalidField|nvme.StatusDNR {
		t.Fatalf("offset beyond log: %v", s.status)
	}
	sqe.SetLogPage(nvme.LogSMART, 0, false, 512, 0)
	if s = admin(c, sqe, 256); s.status != nvme.StatusSGLInvalidLength|nvme.StatusDNR {
		t.Fatalf("SGL length mismatch: %v", s.status)
	}
	// Features.
	s = admin(c, nvme.SQE{Opcode: nvme.AdminSetFeatures, CDW10: uint32(nvme.FeatNumQueues), CDW11: 0x00010001}, 0)
	if !s.status.OK() || s.dw0 != 0x00010001 {
		t.Fatalf("number of queues: %v %#x", s.status, s.dw0)
	}
	s = admin(c, nvme.SQE{Opcode: nvme.AdminSetFeatures, CDW10: uint32(nvme.FeatNumQueues), CDW11: 0xFFFF}, 0)
	if s.status != nvme.StatusInvalidField|nvme.StatusDNR {
		t.Fatalf("0xFFFF queues: %v", s.status)
	}
	s = admin(c, nvme.SQE{Opcode: nvme.AdminSetFeatures, CDW10: uint32(nvme.FeatAsyncEvent), CDW11: 0x80000900}, 0)
	if s.dw0 != 0x900 {
		t.Fatalf("AEC %#x, want 0x900 (supported subset)", s.dw0)
	}
	s = admin(c, nvme.SQE{Opcode: nvme.AdminKeepAlive}, 0)
	if s.status != nvme.StatusKATOInvalid|nvme.StatusDNR {
		t.Fatalf("keep alive with KATO 0: %v", s.status)
	}
	if s = admin(c, nvme.SQE{Opcode: 0x7E}, 0); s.status != nvme.StatusInvalidOpcode|nvme.StatusDNR {
		t.Fatalf("unknown opcode: %v", s.status)
	}
}

func TestDiscoveryLog(t *testing.T) {
	tg := newStateTarget(t, TargetConfig{})
	dev, _ := blockdev.NewMalloc("o", 1<<20, 512)
	tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("open"), Device: dev, AllowAnyHost: true})
	tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("other"), Device: dev, AllowedHosts: []string{"nqn.2014-08.org.nvmexpress:uuid:x"}})
	c := enabled(t, tg, nvme.DiscoveryNQN)
	var sqe nvme.SQE
	sqe.Opcode = nvme.AdminGetLogPage
	sqe.SetLogPage(nvme.LogDiscovery, 0, true, 4096, 0)
	s := admin(c, sqe, 4096)
	gen, e := nvme.ParseDiscoveryLog(s.buf)
	if !s.status.OK() || len(e) != 3 || e[0].SubType != nvme.SubTypeCurrentDisc || e[1].SubNQN != NQNFor("open") || e[2].SubNQN != NQNFor("s") {
		t.Fatalf("discovery log %v gen %d %+v", s.status, gen, e)
	}
	// Window at offset 1024 (newer libnvme reads entries from LPO 1024).
	sqe.SetLogPage(nvme.LogDiscovery, 0, false, 1024, 2048)
	s = admin(c, sqe, 1024)
	var ent nvme.DiscoveryEntry
	ent.Unmarshal(s.buf)
	if ent.SubNQN != NQNFor("open") || ent.TrType != nvme.TrTypeTCP {
		t.Fatalf("entry at offset 2048: %+v", ent)
	}
	s = admin(c, nvme.SQE{Opcode: nvme.AdminIdentify, CDW10: 1}, 4096)
	var id nvme.IdentifyController
	id.Unmarshal(s.buf)
	if id.CNTRLTYPE != nvme.CtrlTypeDiscovery || id.SubNQN != nvme.DiscoveryNQN {
		t.Fatalf("discovery identify %+v", id)
	}
	if s = admin(c, nvme.SQE{Opcode: nvme.AdminIdentify, NSID: 1, CDW10: 0}, 4096); s.status.OK() {
		t.Fatal("identify namespace on discovery controller succeeded")
	}
}
