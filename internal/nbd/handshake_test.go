package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

func TestGreetingBytes(t *testing.T) {
	s, _ := startServer(t, 1<<20, 512, ExportOptions{})
	c := dialRaw(t, s.Addr())
	if c.sflag != 3 {
		t.Fatalf("handshake flags %#x, want FIXED_NEWSTYLE|NO_ZEROES", c.sflag)
	}
}

func TestRejectNonFixedClient(t *testing.T) {
	s, _ := startServer(t, 1<<20, 512, ExportOptions{})
	for _, f := range []uint32{0, 2, 4, 0x80000001} {
		c := dialRaw(t, s.Addr())
		c.sendFlags(f)
		c.expectEOF()
	}
}

func TestOptionMagicAndTooBig(t *testing.T) {
	s, _ := startServer(t, 1<<20, 512, ExportOptions{})
	c := dialRaw(t, s.Addr())
	c.sendFlags(1)
	c.write(bytes.Repeat([]byte{0x42}, 16)) // not IHAVEOPT
	c.expectEOF()

	c = dialRaw(t, s.Addr())
	c.sendFlags(1)
	h := make([]byte, 16)
	binary.BigEndian.PutUint64(h, 0x49484156454F5054)
	binary.BigEndian.PutUint32(h[8:], 7)
	binary.BigEndian.PutUint32(h[12:], 1<<30)
	c.write(h)
	if _, typ, _ := c.readOptReply(); typ != repErrTooBig {
		t.Fatalf("oversized option: reply %#x", typ)
	}
	c.expectEOF()
}

func TestOptionErrors(t *testing.T) {
	s, _ := startServer(t, 1<<20, 512, ExportOptions{})
	c := dialRaw(t, s.Addr())
	c.sendFlags(3)
	cases := []struct {
		opt  uint32
		data []byte
		want uint32
	}{
		{99, []byte("junk"), repErrUnsup},
		{optStartTLS, nil, repErrUnsup},
		{optExtendedHeaders, nil, repErrUnsup},
		{optPeekExport, nil, repErrUnsup},
		{optList, []byte("x"), repErrInvalid},
		{optStructuredReply, []byte("x"), repErrInvalid},
		{optSetMetaContext, infoData(""), repErrInvalid}, // before SR
		{optGo, []byte{0, 0, 0, 9, 'a'}, repErrInvalid},
		{optGo, []byte{0, 0, 0, 0, 0, 2, 0, 1}, repErrInvalid}, // 2 infos, 1 code
		{optInfo, infoData("nope"), repErrUnknown},
		{optGo, infoData("nope"), repErrUnknown},
		{optStructuredReply, nil, repAck},
		{optStructuredReply, nil, repErrInvalid}, // twice
		{optListMetaContext, metaData("disk", "qemu:dirty-bitmap:x"), repAck},
		{optSetMetaContext, metaData("disk", "qemu:allocation-depth"), repAck},
		{optSetMetaContext, metaData("nope", "base:allocation"), repErrUnknown},
		{optSetMetaContext, []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, repErrInvalid},
		{optSetMetaContext, []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9}, repErrInvalid},
	}
	for i, tc := range cases {
		c.sendOpt(tc.opt, tc.data)
		o, typ, _ := c.readOptReply()
		if o != tc.opt || typ != tc.want {
			t.Errorf("case %d option %d: reply (%d, %#x), want %#x", i, tc.opt, o, typ, tc.want)
		}
	}
	// Still negotiating: GO works.
	if typ, msg := c.info(optGo, "disk"); typ != repAck {
		t.Fatalf("GO after errors: %#x %s", typ, msg)
	}
}

func metaData(name string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

func TestOptInfoThenGo(t *testing.T) {
	s, _ := startServer(t, 8<<20, 4096, ExportOptions{Description: "a test disk"})
	c := dialRaw(t, s.Addr())
	c.sendFlags(1)
	if typ, msg := c.info(optInfo, "disk", infoName, infoDescription, infoBlockSize, 999); typ != repAck {
		t.Fatalf("INFO: %#x %s", typ, msg)
	}
	if c.size != 8<<20 || c.desc != "a test disk" || c.gotName != "disk" {
		t.Fatalf("INFO data: size %d desc %q name %q", c.size, c.desc, c.gotName)
	}
	if c.minBS != 4096 || c.prefBS != 4096 || c.maxBS != maxPayload {
		t.Fatalf("block sizes %d/%d/%d", c.minBS, c.prefBS, c.maxBS)
	}
	want := tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagSendTrim | tflagSendWriteZeroes | tflagCanMultiConn
	if c.tflags != want {
		t.Fatalf("flags %#x, want %#x", c.tflags, want)
	}
	// Empty name selects the only export; GO with no info requests.
	if typ, msg := c.info(optGo, ""); typ != repAck {
		t.Fatalf("GO: %#x %s", typ, msg)
	}
	if _, code := c.read(0, 4096); code != 0 {
		t.Fatalf("read after GO: %d", code)
	}
}

func TestReadOnlyFlags(t *testing.T) {
	s, _ := startServer(t, 1<<20, 512, ExportOptions{ReadOnly: true})
	c := dial(t, s.Addr(), "disk", false)
	if c.tflags&tflagReadOnly == 0 || c.tflags&tflagSendTrim != 0 {
		t.Fatalf("read-only flags %#x", c.tflags)
	}
	if code := c.writeAt(0, 0, make([]byte, 512)); code != errPerm {
		t.Fatalf("write to read-only: %d", code)
	}
	if code := c.do(0, cmdWriteZeroes, 0, 512, nil, nil); code != errPerm {
		t.Fatalf("write-zeroes to read-only: %d", code)
	}
	if _, code := c.read(0, 512); code != 0 {
		t.Fatalf("read from read-only: %d", code)
	}
}

func TestOptAbort(t *testing.T) {
	s, _ := startServer(t, 1<<20, 512, ExportOptions{})
	c := dialRaw(t, s.Addr())
	c.sendFlags(1)
	c.sendOpt(optAbort, nil)
	if _, typ, _ := c.readOptReply(); typ != repAck {
		t.Fatalf("ABORT reply %#x", typ)
	}
	c.expectEOF()
}

func TestOptExportName(t *testing.T) {
	s, _ := startServer(t, 1<<20, 512, ExportOptions{})
	for _, noZeroes := range []bool{false, true} {
		c := dialRaw(t, s.Addr())
		f := uint32(1)
		if noZeroes {
			f = 3
		}
		c.sendFlags(f)
		c.sendOpt(optExportName, []byte("disk"))
		n := 10
		if !noZeroes {
			n += 124
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(c.br, b); err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint64(b) != 1<<20 || binary.BigEndian.Uint16(b[8:])&tflagHasFlags == 0 {
			t.Fatalf("export data % x", b[:10])
		}
		if !noZeroes && !bytes.Equal(b[10:], make([]byte, 124)) {
			t.Fatal("padding not zero")
		}
		if _, code := c.read(0, 512); code != 0 {
			t.Fatalf("read: %d", code)
		}
	}
	c := dialRaw(t, s.Addr())
	c.sendFlags(3)
	c.sendOpt(optExportName, []byte("nope"))
	c.expectEOF()
}

func TestListAndAllowList(t *testing.T) {
	s, _ := startServer(t, 1<<20, 512, ExportOptions{Description: "d1", AllowedClients: []string{"127.0.0.0/8"}})
	dev2, _ := blockdev.NewMalloc("x", 1<<20, 512)
	if err := s.AddExport("hidden", dev2, ExportOptions{AllowedClients: []string{"10.1.2.3", "fd00::/8"}}); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, s.Addr())
	c.sendFlags(3)
	c.sendOpt(optList, nil)
	var names []string
	for {
		_, typ, d := c.readOptReply()
		if typ == repAck {
			break
		}
		if typ != repServer {
			t.Fatalf("LIST reply %#x", typ)
		}
		n := binary.BigEndian.Uint32(d)
		names = append(names, string(d[4:4+n])+"|"+string(d[4+n:]))
	}
	if strings.Join(names, ",") != "disk|d1" {
		t.Fatalf("LIST = %v", names)
	}
	if typ, _ := c.info(optGo, "hidden"); typ != repErrUnknown {
		t.Fatalf("GO on hidden export: %#x", typ)
	}
	if typ, _ := c.info(optGo, "disk"); typ != repAck {
		t.Fatalf("GO on allowed export: %#x", typ)
	}
	if err := s.AddExport("bad", dev2, ExportOptions{AllowedClients: []string{"not-an-ip"}}); err == nil {
		t.Fatal("AddExport accepted a bad allow-list entry")
	}
	// Empty name is ambiguous with two visible exports.
	if err := s.AddExport("second", dev2, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	c = dialRaw(t, s.Addr())
	c.sendFlags(3)
	if typ, _ := c.info(optGo, ""); typ != repErrUnknown {
		t.Fatalf("GO with empty name and two exports: %#x", typ)
	}
}

func TestServerAPI(t *testing.T) {
	s, dev := startServer(t, 1<<20, 512, ExportOptions{Description: "x"})
	if err := s.AddExport("disk", dev, ExportOptions{}); err == nil {
		t.Fatal("duplicate AddExport succeeded")
	}
	if err := s.AddExport("nil", nil, ExportOptions{}); err == nil {
		t.Fatal("nil device accepted")
	}
	if err := s.RemoveExport("nope"); err == nil {
		t.Fatal("RemoveExport of unknown export succeeded")
	}
	if err := s.Start(t.Context()); err == nil {
		t.Fatal("second Start succeeded")
	}
	ex := s.Exports()
	if len(ex) != 1 || ex[0].Name != "disk" || ex[0].Size != 1<<20 || ex[0].BlockSize != 512 || ex[0].Description != "x" {
		t.Fatalf("Exports = %+v", ex)
	}
	if got := URI("127.0.0.1", 10809, "vol 1"); got != "nbd://127.0.0.1:10809/vol%201" {
		t.Fatalf("URI = %s", got)
	}
	if got := URI("::1", 10809, "a/b"); got != "nbd://[::1]:10809/a/b" {
		t.Fatalf("URI = %s", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AddExport("late", dev, ExportOptions{}); err == nil {
		t.Fatal("AddExport after Close succeeded")
	}
}

func TestHandshakeTimeout(t *testing.T) {
	s := NewServer(Config{ListenAddr: "127.0.0.1:0", Logger: quietLogger(), HandshakeTimeout: 200 * time.Millisecond})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := dialRaw(t, s.Addr())
	c.sendFlags(3) // then stall
	start := time.Now()
	c.expectEOF()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stalled negotiation closed after %v", d)
	}
}
