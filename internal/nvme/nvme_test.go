package nvme

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSQERoundTrip(t *testing.T) {
	in := SQE{Opcode: IOWrite, Flags: SQEFlagsPSDTSGL, CID: 0x2001, NSID: 1, CDW2: 2, CDW3: 3, MPTR: 4,
		SGL: SGL{Addr: 5, Length: 4096, ID: SGLTransportDataBlk}, CDW10: 10, CDW11: 11, CDW12: 12, CDW13: 13, CDW14: 14, CDW15: 15}
	var b [64]byte
	in.Marshal(b[:])
	var out SQE
	out.Unmarshal(b[:])
	if in != out {
		t.Fatalf("round trip: %+v != %+v", out, in)
	}
	if b[39] != 0x5A || b[1] != 0x40 || b[2] != 0x01 || b[3] != 0x20 {
		t.Fatalf("layout wrong: % x", b[:40])
	}
}

func TestCQEStatusWire(t *testing.T) {
	// Connect Invalid Host with DNR is 0x8308 on the wire (nvme-tcp-facts §4.2).
	s := StatusConnectInvalidHost | StatusDNR
	if s.Wire() != 0x8308 {
		t.Fatalf("wire = %#x, want 0x8308", s.Wire())
	}
	if StatusFromWire(0x800c) != StatusInternal|StatusDNR {
		t.Fatalf("0x800c decodes to %v", StatusFromWire(0x800c))
	}
	c := CQE{DW0: 1, DW1: 2, SQHD: 3, SQID: 4, CID: 0x1f, Status: s}
	var b [16]byte
	c.Marshal(b[:])
	var d CQE
	d.Unmarshal(b[:])
	if c != d {
		t.Fatalf("%+v != %+v", d, c)
	}
	if !strings.Contains(s.Error(), "Connect Invalid Host") || s.SCT() != 1 || s.SC() != 0x84 {
		t.Fatalf("bad status %v", s)
	}
}

func TestConnectData(t *testing.T) {
	d := ConnectData{HostID: [16]byte{1, 2}, CNTLID: 0xFFFF, SubNQN: "nqn.2019-05.io.kura:a", HostNQN: "nqn.2014-08.org.nvmexpress:uuid:x"}
	b := make([]byte, 1024)
	d.Marshal(b)
	var e ConnectData
	e.Unmarshal(b)
	if d != e {
		t.Fatalf("%+v != %+v", e, d)
	}
}

func TestIdentifyRoundTrip(t *testing.T) {
	c := IdentifyController{SN: "abc", MN: "Kura", FR: "1.0", CNTLID: 7, KAS: 10, MAXCMD: 128, NN: 1, SGLS: 0x100001,
		IOCCSZ: 516, IORCSZ: 1, MSDBD: 1, SubNQN: "nqn.2019-05.io.kura:x", CNTRLTYPE: 1, ONCS: ONCSDSM}
	b := make([]byte, IdentifySize)
	c.Marshal(b)
	var d IdentifyController
	d.Unmarshal(b)
	if c != d {
		t.Fatalf("%+v\n!=\n%+v", d, c)
	}
	if string(b[4:24]) != "abc                 " {
		t.Fatalf("SN not space padded: %q", b[4:24])
	}
	n := IdentifyNamespace{NSZE: 100, NCAP: 100, NUSE: 100, LBADS: 12, ANAGRPID: 1, NGUID: [16]byte{9}}
	n.Marshal(b)
	var m IdentifyNamespace
	m.Unmarshal(b)
	if n != m {
		t.Fatalf("%+v != %+v", m, n)
	}
}

func TestNSDescList(t *testing.T) {
	b := make([]byte, IdentifySize)
	uuid := bytes.Repeat([]byte{7}, 16)
	MarshalNSDescList(b, NSDescriptor{NIDTNGUID, make([]byte, 16)}, NSDescriptor{NIDTUUID, uuid}, NSDescriptor{NIDTCSI, []byte{0}})
	if !bytes.Equal(b[:4], []byte{3, 16, 0, 0}) || b[20] != 4 || b[21] != 1 {
		t.Fatalf("layout: % x", b[:32])
	}
	d := ParseNSDescList(b)
	if len(d) != 2 || d[0].Type != NIDTUUID || d[1].Type != NIDTCSI {
		t.Fatalf("parsed %+v", d)
	}
}

func TestValidateNQN(t *testing.T) {
	good := []string{"nqn.2019-05.io.kura:vol1", DiscoveryNQN, "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"}
	for _, n := range good {
		if err := ValidateNQN(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	bad := []string{"", "iqn.2019-05.io.kura:x", "nqn.2019-05.io.kura:has space", "nqn.19-05.io:x", "nqn.2019-05.", "nqn." + strings.Repeat("a", 220)}
	for _, n := range bad {
		if err := ValidateNQN(n); !errors.Is(err, ErrInvalidNQN) {
			t.Errorf("%q: got %v, want ErrInvalidNQN", n, err)
		}
	}
}

func TestLogPageFields(t *testing.T) {
	var c SQE
	c.SetLogPage(LogDiscovery, 0, true, 1024, 0)
	if c.CDW10 != 0x00FF8070 {
		t.Fatalf("cdw10 = %#x, want 0x00FF8070 (pcap)", c.CDW10)
	}
	if c.LogPageLen() != 1024 || c.LogPageLID() != 0x70 || !c.LogPageRAE() {
		t.Fatal("decode mismatch")
	}
	g, e := ParseDiscoveryLog(MarshalDiscoveryLog(2, []DiscoveryEntry{{TrType: TrTypeTCP, SubNQN: "nqn.x", TrSvcID: "8420"}}))
	if g != 2 || len(e) != 1 || e[0].SubNQN != "nqn.x" || e[0].TrSvcID != "8420" {
		t.Fatalf("discovery log: %d %+v", g, e)
	}
	if len(MarshalANALog(0, []ANAGroup{{GroupID: 1, State: ANAOptimized, NSIDs: []uint32{1}}}, false)) != 16+32+4 {
		t.Fatal("ana log size")
	}
}
