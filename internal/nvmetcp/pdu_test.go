package nvmetcp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/kura-io/kura/internal/nvme"
)

var testLim = Limits{MaxICD: 16384, MaxH2CData: 131072, MaxC2HData: 1 << 20}

// linuxICReq is the 128-byte ICReq a Linux 6.1 host sends (nvme-tcp-facts
// §2.1 [pcap]): pfv 0, hpda 0, no digests, maxr2t 0.
func linuxICReq() []byte {
	b := make([]byte, 128)
	b[0], b[2], b[3] = TypeICReq, 128, 0
	binary.LittleEndian.PutUint32(b[4:], 128)
	return b
}

// linuxConnect is the admin Connect capsule of a Linux 6.1 host (facts §4.4,
// §6.1 [pcap]): hlen 72, pdo 72, plen 1096, flags 0x40, SGL 0x01 len 1024,
// QID 0, SQSIZE 31, KATO 5000, CNTLID 0xFFFF.
func linuxConnect(subnqn, hostnqn string) []byte {
	b := make([]byte, 1096)
	b[0], b[2], b[3] = TypeCapsuleCmd, 72, 72
	binary.LittleEndian.PutUint32(b[4:], 1096)
	sqe := nvme.SQE{Opcode: nvme.OpcodeFabrics, Flags: 0x40, NSID: uint32(nvme.FabricsConnect),
		SGL: nvme.SGL{Length: 1024, ID: nvme.SGLDataBlockOffset}, CDW10: 0, CDW11: 31, CDW12: 5000}
	sqe.Marshal(b[8:])
	cd := nvme.ConnectData{HostID: [16]byte{0xde, 0xad}, CNTLID: 0xFFFF, SubNQN: subnqn, HostNQN: hostnqn}
	cd.Marshal(b[72:])
	return b
}

func decoder(b []byte) *Decoder {
	return NewDecoder(bufio.NewReader(bytes.NewReader(b)), true, testLim)
}

func TestDecodeLinuxICReqAndConnect(t *testing.T) {
	stream := append(linuxICReq(), linuxConnect("nqn.2019-05.io.kura:v", "nqn.2014-08.org.nvmexpress:uuid:h")...)
	d := decoder(stream)
	h, err := d.Next()
	if err != nil || h.Type != TypeICReq {
		t.Fatalf("ICReq: %v %+v", err, h)
	}
	if r := d.ICReq(); r != (ICReq{}) {
		t.Fatalf("ICReq fields %+v", r)
	}
	h, err = d.Next()
	if err != nil || h.Type != TypeCapsuleCmd || d.DataLen() != 1024 {
		t.Fatalf("Connect: %v %+v len %d", err, h, d.DataLen())
	}
	var sqe nvme.SQE
	d.SQE(&sqe)
	if sqe.FCType() != nvme.FabricsConnect || sqe.ConnectSQSize() != 31 || sqe.ConnectKATO() != 5000 {
		t.Fatalf("sqe %+v", sqe)
	}
	data := make([]byte, 1024)
	if err := d.ReadData(data); err != nil {
		t.Fatal(err)
	}
	var cd nvme.ConnectData
	cd.Unmarshal(data)
	if cd.CNTLID != 0xFFFF || cd.SubNQN != "nqn.2019-05.io.kura:v" {
		t.Fatalf("connect data %+v", cd)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

func TestRoundTripAllPDUs(t *testing.T) {
	for _, dg := range []struct{ h, d bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		var hostOut, ctrlOut bytes.Buffer
		hw, cw := bufio.NewWriter(&hostOut), bufio.NewWriter(&ctrlOut)
		he, ce := NewEncoder(hw), NewEncoder(cw)
		he.HDgst, he.DDgst, ce.HDgst, ce.DDgst = dg.h, dg.d, dg.h, dg.d
		sqe := nvme.SQE{Opcode: nvme.IOWrite, Flags: 0x40, CID: 0x1234, NSID: 1, SGL: nvme.SGL{Length: 8, ID: 1}}
		icd := []byte("abcdefgh")
		must(t, he.WriteCapsuleCmd(&sqe, icd))
		must(t, he.WriteCapsuleCmd(&sqe, nil))
		must(t, he.WriteH2CData(7, 3, 4096, []byte("hello"), true))
		must(t, he.WriteTermReq(false, FESSequenceError, 0, []byte{1, 2, 3}))
		cqe := nvme.CQE{DW0: 5, CID: 0x1234, SQID: 1, SQHD: 2, Status: nvme.StatusLBARange | nvme.StatusDNR}
		must(t, ce.WriteCapsuleResp(&cqe))
		must(t, ce.WriteC2HData(9, 0, []byte("data!"), true, true))
		must(t, ce.WriteR2T(R2T{CCCID: 1, TTag: 2, R2TO: 3, R2TL: 4}))
		must(t, ce.WriteTermReq(true, FESInvalidHeader, 2, make([]byte, 200)))
		hw.Flush()
		cw.Flush()

		d := decoder(hostOut.Bytes())
		d.HDgst, d.DDgst = dg.h, dg.d
		h, err := d.Next()
		must(t, err)
		var got nvme.SQE
		d.SQE(&got)
		buf := make([]byte, d.DataLen())
		must(t, d.ReadData(buf))
		if got != sqe || string(buf) != "abcdefgh" || (h.Flags&FlagDDGST != 0) != dg.d {
			t.Fatalf("capsule %+v %q flags %#x", got, buf, h.Flags)
		}
		h, err = d.Next()
		must(t, err)
		if d.DataLen() != 0 || h.Flags&FlagDDGST != 0 || h.PDO != 0 {
			t.Fatalf("capsule without data: %+v", h)
		}
		h, err = d.Next()
		must(t, err)
		if dh := d.Data(); dh != (DataHdr{7, 3, 4096, 5}) || h.Flags&FlagLast == 0 {
			t.Fatalf("h2c %+v", dh)
		}
		buf = make([]byte, 5)
		must(t, d.ReadData(buf))
		h, err = d.Next()
		must(t, err)
		if h.Type != TypeH2CTermReq || d.Term().FES != FESSequenceError || d.DataLen() != 3 {
			t.Fatalf("term %+v", h)
		}

		c := NewDecoder(bufio.NewReader(bytes.NewReader(ctrlOut.Bytes())), false, testLim)
		c.HDgst, c.DDgst = dg.h, dg.d
		_, err = c.Next()
		must(t, err)
		var gc nvme.CQE
		c.CQE(&gc)
		if gc != cqe {
			t.Fatalf("cqe %+v", gc)
		}
		h, err = c.Next()
		must(t, err)
		if h.Flags&(FlagLast|FlagSuccess) != FlagLast|FlagSuccess || c.Data().DataL != 5 {
			t.Fatalf("c2h %+v", h)
		}
		must(t, c.Discard())
		_, err = c.Next()
		must(t, err)
		if c.R2T() != (R2T{1, 2, 3, 4}) {
			t.Fatalf("r2t %+v", c.R2T())
		}
		h, err = c.Next()
		must(t, err)
		if h.Type != TypeC2HTermReq || h.PLen != 24+128 || c.Term().FEI != 2 {
			t.Fatalf("c2h term %+v", h)
		}
	}
}

func TestDigestCheckValue(t *testing.T) {
	if got := digest([]byte("123456789")); got != 0xE3069283 {
		t.Fatalf("crc32c check value %#x", got)
	}
}

func TestMalformedHeaders(t *testing.T) {
	base := func() []byte { return linuxConnect("nqn.2019-05.io.kura:v", "h") }
	cases := []struct {
		name string
		mod  func(b []byte) []byte
		fes  uint16
		fei  uint32
	}{
		{"c2h type from host", func(b []byte) []byte { b[0] = TypeCapsuleRsp; return b }, FESInvalidHeader, 0},
		{"unknown type", func(b []byte) []byte { b[0] = 0x08; return b }, FESInvalidHeader, 0},
		{"bad flags", func(b []byte) []byte { b[1] = FlagLast; return b }, FESInvalidHeader, 1},
		{"hdgst flag not negotiated", func(b []byte) []byte { b[1] = FlagHDGST; return b }, FESInvalidHeader, 1},
		{"bad hlen", func(b []byte) []byte { b[2] = 64; return b }, FESInvalidHeader, 2},
		{"pdo inside header", func(b []byte) []byte { b[3] = 40; return b }, FESInvalidHeader, 3},
		{"pdo unaligned", func(b []byte) []byte { b[3] = 74; return b }, FESInvalidHeader, 3},
		{"plen < pdo", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[4:], 72); return b }, FESInvalidHeader, 4},
		{"huge plen", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[4:], 0xFFFFFFFF); return b }, FESDataLimit, 0},
		{"no data plen mismatch", func(b []byte) []byte { b[3] = 0; return b }, FESInvalidHeader, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decoder(c.mod(base())).Next()
			var fe *FatalError
			if !errors.As(err, &fe) || fe.FES != c.fes || fe.FEI != c.fei {
				t.Fatalf("got %v, want fes %d fei %d", err, c.fes, c.fei)
			}
		})
	}
	// Header digest mismatch.
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	e := NewEncoder(w)
	e.HDgst = true
	must(t, e.WriteCapsuleCmd(&nvme.SQE{CID: 1}, nil))
	w.Flush()
	b := out.Bytes()
	b[10] ^= 1
	d := decoder(b)
	d.HDgst = true
	var fe *FatalError
	if _, err := d.Next(); !errors.As(err, &fe) || fe.FES != FESHeaderDigest {
		t.Fatalf("header digest: %v", err)
	}
	// Data digest mismatch.
	out.Reset()
	e.HDgst, e.DDgst = false, true
	must(t, e.WriteCapsuleCmd(&nvme.SQE{CID: 1}, []byte("abcd")))
	w.Flush()
	b = out.Bytes()
	b[len(b)-5] ^= 1
	d = decoder(b)
	d.DDgst = true
	_, err := d.Next()
	must(t, err)
	if err := d.ReadData(make([]byte, 4)); !IsDataDigestError(err) {
		t.Fatalf("data digest: %v", err)
	}
	// Truncated stream.
	if _, err := decoder(base()[:50]).Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
