package nbd

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// fakeConn is a net.Conn that reads a fixed client byte stream and
// collects (a bounded prefix of) what the server writes.
type fakeConn struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func (f *fakeConn) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *fakeConn) Write(p []byte) (int, error) {
	if f.out.Len() < 1<<16 {
		f.out.Write(p[:min(len(p), 1<<16)])
	}
	return len(p), nil
}
func (f *fakeConn) Close() error        { return nil }
func (f *fakeConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10809} }
func (f *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (f *fakeConn) SetDeadline(t time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(t time.Time) error { return nil }

// serveBytes runs one server connection over a fixed client stream.
func serveBytes(t testing.TB, in []byte) []byte {
	s := NewServer(Config{Logger: quietLogger()})
	dev, err := blockdev.NewMalloc("disk", 1<<20, 512)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddExport("disk", dev, ExportOptions{Description: "fuzz"}); err != nil {
		t.Fatal(err)
	}
	hidden, _ := blockdev.NewMalloc("h", 1<<20, 4096)
	if err := s.AddExport("ro", hidden, ExportOptions{ReadOnly: true, AllowedClients: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	fc := &fakeConn{r: bytes.NewReader(in)}
	c := newConn(s, fc)
	c.serve()
	return fc.out.Bytes()
}

func opt(code uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, code)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func req(flags, typ uint16, cookie, off uint64, length uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicRequest)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	return append(b, payload...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var clientFlags = []byte{0, 0, 0, 3}

func FuzzHandshake(f *testing.F) {
	f.Add(cat(clientFlags, opt(optGo, infoData("disk", 0, 1, 2, 3))))
	f.Add(cat(clientFlags, opt(optList, nil), opt(optInfo, infoData("ro", 2)), opt(optAbort, nil)))
	f.Add(cat([]byte{0, 0, 0, 1}, opt(optStructuredReply, nil), opt(optSetMetaContext, metaData("disk", "base:allocation")),
		opt(optListMetaContext, metaData("", "base:")), opt(optExportName, []byte("disk"))))
	f.Add(cat(clientFlags, opt(optExtendedHeaders, nil), opt(99, []byte("zz")), opt(optGo, []byte{0, 0, 0, 200, 1})))
	f.Add(cat(clientFlags, opt(optGo, []byte{0xff, 0xff, 0xff, 0xff, 0, 0})))
	f.Add(cat(clientFlags, binary.BigEndian.AppendUint64(nil, magicIHaveOpt), []byte{0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff}))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		// The parsers on their own: must not panic, must not alias.
		if r, err := parseInfoRequest(in); err == nil && len(r.name) > maxStringLen {
			t.Fatalf("name of %d bytes accepted", len(r.name))
		}
		_, _, _ = parseMetaContext(in)
		// A whole connection fed these bytes.
		out := serveBytes(t, in)
		if len(out) < greetingLen || binary.BigEndian.Uint64(out) != magicNBD {
			t.Fatalf("no greeting")
		}
	})
}

// FuzzRequest fuzzes the transmission phase after a valid handshake; the
// first input byte selects structured replies (bit 0) and base:allocation
// block status (bit 1).
func FuzzRequest(f *testing.F) {
	w := bytes.Repeat([]byte{0x5a}, 4096)
	f.Add(byte(0), cat(req(0, cmdWrite, 1, 0, 4096, w), req(0, cmdRead, 2, 0, 4096, nil), req(0, cmdDisc, 3, 0, 0, nil)))
	f.Add(byte(1), cat(req(cmdFlagFUA, cmdWrite, 1, 512, 512, w[:512]), req(0, cmdFlush, 2, 0, 0, nil),
		req(cmdFlagNoHole, cmdWriteZeroes, 3, 0, 8192, nil), req(0, cmdTrim, 4, 4096, 4096, nil), req(0, cmdCache, 5, 0, 512, nil)))
	f.Add(byte(1), cat(req(0, cmdRead, 1, 1<<20, 512, nil), req(0, cmdRead, 2, 3, 512, nil), req(0, 77, 3, 0, 0, nil),
		req(0xffff, cmdRead, 4, 0, 512, nil), req(0, cmdBlockStatus, 5, 0, 512, nil), req(0, cmdRead, 6, 0, 0, nil)))
	f.Add(byte(2), cat(req(0, cmdWrite, 1, 4096, 4096, w), req(0, cmdBlockStatus, 2, 0, 1<<20, nil),
		req(cmdFlagReqOne, cmdBlockStatus, 3, 512, 8192, nil), req(0, cmdBlockStatus, 4, 0, 0xffffffff, nil)))
	f.Add(byte(0), req(0, cmdWrite, 1, 0, 0xffffffff, nil))
	f.Add(byte(0), req(0, cmdWrite, 1, 0, 4096, w[:100]))
	f.Add(byte(1), []byte{0x25, 0x60, 0x95, 0x13, 0, 0})
	f.Fuzz(func(t *testing.T, mode byte, in []byte) {
		var pre []byte
		if mode&2 != 0 {
			pre = cat(clientFlags, opt(optStructuredReply, nil),
				opt(optSetMetaContext, metaData("disk", "base:allocation")), opt(optGo, infoData("disk")))
		} else if mode&1 != 0 {
			pre = cat(clientFlags, opt(optStructuredReply, nil), opt(optGo, infoData("disk")))
		} else {
			pre = cat(clientFlags, opt(optGo, infoData("disk")))
		}
		serveBytes(t, cat(pre, in))
	})
}
