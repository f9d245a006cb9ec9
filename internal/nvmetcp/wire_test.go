package nvmetcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/nvme"
)

// rawConn is a hand-driven host connection for malformed-PDU tests.
type rawConn struct {
	t   *testing.T
	c   net.Conn
	dec *Decoder
}

func rawDial(t *testing.T, tg *Target) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", tg.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return &rawConn{t: t, c: c, dec: NewDecoder(bufio.NewReader(c), false, Limits{MaxC2HData: 1 << 20})}
}

func (r *rawConn) send(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// expectClosed reads until EOF, returning the TermReq seen (if any).
func (r *rawConn) expectClosed() (term *TermReq) {
	r.t.Helper()
	for {
		h, err := r.dec.Next()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatal("target did not close the connection")
			}
			return term
		}
		if h.Type == TypeC2HTermReq {
			tr := r.dec.Term()
			term = &tr
		}
		r.dec.Discard()
	}
}

func (r *rawConn) next() Header {
	r.t.Helper()
	h, err := r.dec.Next()
	if err != nil {
		r.t.Fatal(err)
	}
	return h
}

func TestMalformedPDUsCloseConnection(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "mal", 1<<20, 512)
	cases := []struct {
		name string
		pdus func() []byte
		fes  uint16 // 0: no TermReq expected (just close)
	}{
		{"capsule before ICReq", func() []byte { return linuxConnect(nqn, testHost) }, FESSequenceError},
		{"bad ICReq pfv", func() []byte { b := linuxICReq(); b[8] = 1; return b }, FESUnsupportedParm},
		{"ICReq wrong hlen", func() []byte { b := linuxICReq(); b[2] = 64; return b }, FESInvalidHeader},
		{"controller PDU type", func() []byte { b := linuxICReq(); b[0] = TypeC2HData; return b }, FESInvalidHeader},
		{"huge plen", func() []byte {
			b := append(linuxICReq(), linuxConnect(nqn, testHost)...)
			binary.LittleEndian.PutUint32(b[128+4:], 1<<31)
			return b
		}, FESDataLimit},
		{"H2CData without R2T", func() []byte {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			e := NewEncoder(w)
			e.WriteH2CData(1, 0, 0, make([]byte, 512), true)
			w.Flush()
			return append(append(linuxICReq(), linuxConnect(nqn, testHost)...), out.Bytes()...)
		}, FESSequenceError},
		{"second ICReq", func() []byte { return append(linuxICReq(), linuxICReq()...) }, FESSequenceError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rawDial(t, tg)
			r.send(c.pdus())
			term := r.expectClosed()
			if c.fes != 0 && (term == nil || term.FES != c.fes) {
				t.Fatalf("TermReq %+v, want FES %#x", term, c.fes)
			}
		})
	}
	// Truncated PDU: target closes after the PDU timeout or our close; make
	// sure the target is still healthy afterwards.
	r := rawDial(t, tg)
	r.send(linuxICReq()[:60])
	r.c.Close()
	d := dial(t, tg, Config{SubNQN: nqn})
	if _, err := d.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
	d.Close()
}

func TestCommandErrorsKeepConnection(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "cmd", 1<<20, 512)
	r := rawDial(t, tg)
	r.send(linuxICReq())
	if h := r.next(); h.Type != TypeICResp || r.dec.ICResp().MaxH2CData < 4096 {
		t.Fatalf("ICResp %+v", h)
	}
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	e := NewEncoder(w)
	// Not connected yet: Identify → Command Sequence Error.
	e.WriteCapsuleCmd(&nvme.SQE{Opcode: nvme.AdminIdentify, Flags: 0x40, CID: 0x1001, CDW10: 1, SGL: nvme.SGL{ID: 0x5A, Length: 4096}}, nil)
	// Bad PSDT.
	e.WriteCapsuleCmd(&nvme.SQE{Opcode: nvme.OpcodeFabrics, Flags: 0x00, CID: 0x1002, NSID: 1, SGL: nvme.SGL{ID: 1, Length: 4}}, []byte{1, 2, 3, 4})
	// Keyed SGL type.
	e.WriteCapsuleCmd(&nvme.SQE{Opcode: nvme.OpcodeFabrics, Flags: 0x40, CID: 0x1003, NSID: 1, SGL: nvme.SGL{ID: 0x40, Length: 1024}}, nil)
	w.Flush()
	r.send(out.Bytes())
	want := []struct {
		cid uint16
		st  nvme.Status
	}{{0x1001, nvme.StatusCmdSeqError}, {0x1002, nvme.StatusInvalidField}, {0x1003, nvme.StatusSGLInvalidType}}
	for _, wnt := range want {
		if h := r.next(); h.Type != TypeCapsuleRsp {
			t.Fatalf("got %s", TypeName(h.Type))
		}
		var cqe nvme.CQE
		r.dec.CQE(&cqe)
		if cqe.CID != wnt.cid || cqe.Status != wnt.st|nvme.StatusDNR {
			t.Fatalf("cid %#x status %v, want %#x %v", cqe.CID, cqe.Status, wnt.cid, wnt.st)
		}
	}
	// Then a proper Connect still works on the same connection.
	r.send(linuxConnect(nqn, testHost))
	r.next()
	var cqe nvme.CQE
	r.dec.CQE(&cqe)
	if !cqe.Status.OK() || cqe.SQHD == 0 || cqe.SQID != 0 {
		t.Fatalf("connect after errors: %+v", cqe)
	}
}

func TestDiscoverOverLoopback(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	addMalloc(t, tg, "d1", 1<<20, 512)
	addMalloc(t, tg, "d2", 1<<20, 512, "nqn.2014-08.org.nvmexpress:uuid:someone-else")
	es, err := Discover(context.Background(), tg.Addr().String(), testHost)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[1].SubNQN != NQNFor("d1") || es[1].TrSvcID == "" || es[1].TrAddr != "127.0.0.1" {
		t.Fatalf("entries %+v", es)
	}
}

func TestKeepAliveTimeoutDisconnects(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "ka", 1<<20, 512)
	r := rawDial(t, tg)
	r.c.SetDeadline(time.Now().Add(10 * time.Second))
	r.send(linuxICReq())
	r.next()
	b := linuxConnect(nqn, testHost)
	binary.LittleEndian.PutUint32(b[8+48:], 1000) // KATO 1 s
	r.send(b)
	r.next()
	start := time.Now()
	if len(tg.Subsystems()[0].Controllers) != 1 {
		t.Fatal("controller not listed")
	}
	// Host goes silent: the target must drop the controller after ~KATO.
	r.expectClosed()
	if el := time.Since(start); el < 900*time.Millisecond || el > 4*time.Second {
		t.Fatalf("closed after %v, want ≈1.5 s", el)
	}
	if n := len(tg.Subsystems()[0].Controllers); n != 0 {
		t.Fatalf("%d controllers left", n)
	}
}

func TestKeepAliveKeepsInitiatorConnected(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "ka2", 1<<20, 512)
	d := dial(t, tg, Config{SubNQN: nqn, KATO: time.Second})
	defer d.Close()
	id := d.CNTLID()
	time.Sleep(2500 * time.Millisecond)
	if _, err := d.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
	if d.CNTLID() != id {
		t.Fatal("controller was re-created: keep-alive did not hold it")
	}
}
