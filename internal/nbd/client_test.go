package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// testClient is a tiny NBD client for the unit tests. It is deliberately
// written from the protocol description, independent of the server code.
type testClient struct {
	t     testing.TB
	nc    net.Conn
	br    *bufio.Reader
	sflag uint16 // server handshake flags
	sr    bool   // structured replies negotiated

	size    uint64
	tflags  uint16
	minBS   uint32
	prefBS  uint32
	maxBS   uint32
	desc    string
	gotName string

	bs   []byte   // payload of the last BLOCK_STATUS chunk
	hdr  [32]byte // receive scratch
	shdr [28]byte // send scratch (a sender goroutine may run beside recv)
	next uint64
}

// quietLogger discards server logs in tests (set NBD_TEST_LOG to see them).
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startServer starts a server on 127.0.0.1:0 with one malloc export "disk".
func startServer(t testing.TB, size int64, bs int, opts ExportOptions) (*Server, blockdev.Device) {
	t.Helper()
	s := NewServer(Config{ListenAddr: "127.0.0.1:0", Logger: quietLogger()})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	dev, err := blockdev.NewMalloc("disk", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddExport("disk", dev, opts); err != nil {
		t.Fatal(err)
	}
	return s, dev
}

// dialRaw connects and reads the 18-byte greeting.
func dialRaw(t testing.TB, addr net.Addr) *testClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &testClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	var g [18]byte
	if _, err := io.ReadFull(c.br, g[:]); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	if binary.BigEndian.Uint64(g[0:]) != 0x4E42444D41474943 || binary.BigEndian.Uint64(g[8:]) != 0x49484156454F5054 {
		t.Fatalf("bad greeting % x", g)
	}
	c.sflag = binary.BigEndian.Uint16(g[16:])
	return c
}

// dial connects, sends client flags, optionally negotiates structured
// replies and does GO on name.
func dial(t testing.TB, addr net.Addr, name string, structured bool) *testClient {
	t.Helper()
	c := dialRaw(t, addr)
	c.sendFlags(3)
	if structured {
		c.sendOpt(8, nil)
		if _, typ, _ := c.readOptReply(); typ != 1 {
			t.Fatalf("STRUCTURED_REPLY: reply type %#x", typ)
		}
		c.sr = true
	}
	if typ, msg := c.info(7, name, 3); typ != 1 {
		t.Fatalf("GO %q: reply %#x %q", name, typ, msg)
	}
	return c
}

func (c *testClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *testClient) sendFlags(f uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], f)
	c.write(b[:])
}

func (c *testClient) sendOpt(opt uint32, data []byte) {
	b := make([]byte, 16+len(data))
	binary.BigEndian.PutUint64(b, 0x49484156454F5054)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], uint32(len(data)))
	copy(b[16:], data)
	c.write(b)
}

// readOptReply returns (option echoed, reply type, data).
func (c *testClient) readOptReply() (uint32, uint32, []byte) {
	c.t.Helper()
	var h [20]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		c.t.Fatalf("option reply: %v", err)
	}
	if m := binary.BigEndian.Uint64(h[:]); m != 0x0003E889045565A9 {
		c.t.Fatalf("option reply magic %#x", m)
	}
	n := binary.BigEndian.Uint32(h[16:])
	d := make([]byte, n)
	if _, err := io.ReadFull(c.br, d); err != nil {
		c.t.Fatalf("option reply data: %v", err)
	}
	return binary.BigEndian.Uint32(h[8:]), binary.BigEndian.Uint32(h[12:]), d
}

func infoData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// info sends INFO (6) or GO (7) and reads replies up to the final one,
// recording the export data. It returns the final reply type and data.
func (c *testClient) info(opt uint32, name string, infos ...uint16) (uint32, string) {
	c.t.Helper()
	c.sendOpt(opt, infoData(name, infos...))
	sawExport := false
	for {
		o, typ, d := c.readOptReply()
		if o != opt {
			c.t.Fatalf("reply for option %d, want %d", o, opt)
		}
		if typ != 3 {
			if typ == 1 && !sawExport {
				c.t.Fatalf("ACK without INFO_EXPORT")
			}
			return typ, string(d)
		}
		switch it := binary.BigEndian.Uint16(d); it {
		case 0:
			if len(d) != 12 {
				c.t.Fatalf("INFO_EXPORT length %d", len(d))
			}
			sawExport = true
			c.size = binary.BigEndian.Uint64(d[2:])
			c.tflags = binary.BigEndian.Uint16(d[10:])
		case 1:
			c.gotName = string(d[2:])
		case 2:
			c.desc = string(d[2:])
		case 3:
			if len(d) != 14 {
				c.t.Fatalf("INFO_BLOCK_SIZE length %d", len(d))
			}
			c.minBS = binary.BigEndian.Uint32(d[2:])
			c.prefBS = binary.BigEndian.Uint32(d[6:])
			c.maxBS = binary.BigEndian.Uint32(d[10:])
		default:
			c.t.Fatalf("unexpected info type %d", it)
		}
	}
}

// send writes one request header (+ payload) and returns its cookie.
func (c *testClient) send(flags, typ uint16, off uint64, length uint32, payload []byte) uint64 {
	c.next++
	h := c.shdr[:]
	binary.BigEndian.PutUint32(h[0:], 0x25609513)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], c.next)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
	if _, err := c.nc.Write(h); err != nil {
		c.t.Fatalf("send: %v", err)
	}
	if len(payload) > 0 {
		if _, err := c.nc.Write(payload); err != nil {
			c.t.Fatalf("send payload: %v", err)
		}
	}
	return c.next
}

// recv reads one complete reply. readLen tells how many data bytes a
// successful simple reply for a cookie carries (READ length, else 0); for
// structured replies data chunks are copied into buf at offset-base.
func (c *testClient) recv(readLen func(cookie uint64) (uint32, uint64), buf []byte) (uint64, uint32, error) {
	var code uint32
	for {
		if _, err := io.ReadFull(c.br, c.hdr[:4]); err != nil {
			return 0, 0, err
		}
		switch m := binary.BigEndian.Uint32(c.hdr[:]); {
		case m == 0x67446698:
			if _, err := io.ReadFull(c.br, c.hdr[4:16]); err != nil {
				return 0, 0, err
			}
			code := binary.BigEndian.Uint32(c.hdr[4:])
			cookie := binary.BigEndian.Uint64(c.hdr[8:])
			n, _ := readLen(cookie)
			if c.sr && n > 0 {
				return 0, 0, fmt.Errorf("simple reply to READ under structured replies")
			}
			if code == 0 && n > 0 {
				if _, err := io.ReadFull(c.br, buf[:n]); err != nil {
					return 0, 0, err
				}
			}
			return cookie, code, nil
		case m == 0x668E33EF && c.sr:
		default:
			return 0, 0, fmt.Errorf("reply magic %#x", m)
		}
		if _, err := io.ReadFull(c.br, c.hdr[4:20]); err != nil {
			return 0, 0, err
		}
		flags := binary.BigEndian.Uint16(c.hdr[4:])
		typ := binary.BigEndian.Uint16(c.hdr[6:])
		cookie := binary.BigEndian.Uint64(c.hdr[8:])
		n := binary.BigEndian.Uint32(c.hdr[16:])
		switch typ {
		case 0:
			if n != 0 {
				return 0, 0, fmt.Errorf("NONE chunk length %d", n)
			}
		case 1:
			if n < 9 {
				return 0, 0, fmt.Errorf("OFFSET_DATA length %d", n)
			}
			var o [8]byte
			if _, err := io.ReadFull(c.br, o[:]); err != nil {
				return 0, 0, err
			}
			rl, base := readLen(cookie)
			off := binary.BigEndian.Uint64(o[:])
			if off < base || off-base+uint64(n-8) > uint64(rl) {
				return 0, 0, fmt.Errorf("OFFSET_DATA out of bounds")
			}
			if _, err := io.ReadFull(c.br, buf[off-base:off-base+uint64(n-8)]); err != nil {
				return 0, 0, err
			}
		case 5:
			d := make([]byte, n)
			if _, err := io.ReadFull(c.br, d); err != nil {
				return 0, 0, err
			}
			if n < 12 || (n-4)%8 != 0 {
				return 0, 0, fmt.Errorf("BLOCK_STATUS chunk length %d", n)
			}
			c.bs = d
		case 0x8001:
			if n < 6 {
				return 0, 0, fmt.Errorf("ERROR chunk length %d", n)
			}
			d := make([]byte, n)
			if _, err := io.ReadFull(c.br, d); err != nil {
				return 0, 0, err
			}
			code = binary.BigEndian.Uint32(d)
			if code == 0 || int(binary.BigEndian.Uint16(d[4:]))+6 != int(n) {
				return 0, 0, fmt.Errorf("bad ERROR chunk % x", d)
			}
		default:
			return 0, 0, fmt.Errorf("unexpected chunk type %#x", typ)
		}
		if flags&1 != 0 {
			return cookie, code, nil
		}
	}
}

// do sends one request and waits for its reply.
func (c *testClient) do(flags, typ uint16, off uint64, length uint32, payload, readBuf []byte) uint32 {
	c.t.Helper()
	ck := c.send(flags, typ, off, length, payload)
	got, code, err := c.recv(func(uint64) (uint32, uint64) {
		if typ == 0 {
			return length, off
		}
		return 0, 0
	}, readBuf)
	if err != nil {
		c.t.Fatalf("reply: %v", err)
	}
	if got != ck {
		c.t.Fatalf("reply cookie %d, want %d", got, ck)
	}
	return code
}

func (c *testClient) read(off uint64, n int) ([]byte, uint32) {
	c.t.Helper()
	b := make([]byte, n)
	code := c.do(0, 0, off, uint32(n), nil, b)
	return b, code
}

func (c *testClient) writeAt(flags uint16, off uint64, p []byte) uint32 {
	c.t.Helper()
	return c.do(flags, 1, off, uint32(len(p)), p, nil)
}

// expectEOF asserts the server closed the connection.
func (c *testClient) expectEOF() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	for {
		_, err := c.br.Read(b[:])
		if err == nil {
			continue // drain what was sent before the close
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("server did not close the connection")
		}
		return
	}
}
