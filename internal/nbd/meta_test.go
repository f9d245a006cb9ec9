package nbd

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

// setMeta negotiates structured replies and base:allocation, then GO.
func dialMeta(t *testing.T, s *Server) *testClient {
	t.Helper()
	c := dialRaw(t, s.Addr())
	c.sendFlags(3)
	c.sendOpt(optStructuredReply, nil)
	if _, typ, _ := c.readOptReply(); typ != repAck {
		t.Fatalf("SR: %#x", typ)
	}
	c.sr = true
	c.sendOpt(optListMetaContext, metaData("disk"))
	if _, typ, d := c.readOptReply(); typ != repMetaContext || string(d[4:]) != "base:allocation" {
		t.Fatalf("LIST_META_CONTEXT: %#x %q", typ, d)
	}
	if _, typ, _ := c.readOptReply(); typ != repAck {
		t.Fatalf("LIST_META_CONTEXT end: %#x", typ)
	}
	c.sendOpt(optSetMetaContext, metaData("disk", "base:allocation", "qemu:x"))
	_, typ, d := c.readOptReply()
	if typ != repMetaContext || binary.BigEndian.Uint32(d) != metaContextID || string(d[4:]) != "base:allocation" {
		t.Fatalf("SET_META_CONTEXT: %#x %q", typ, d)
	}
	if _, typ, _ := c.readOptReply(); typ != repAck {
		t.Fatalf("SET_META_CONTEXT end: %#x", typ)
	}
	if typ, msg := c.info(optGo, "disk"); typ != repAck {
		t.Fatalf("GO: %#x %s", typ, msg)
	}
	return c
}

func extents(c *testClient) string {
	var out string
	for p := c.bs[4:]; len(p) >= 8; p = p[8:] {
		out += fmt.Sprintf("%d:%d ", binary.BigEndian.Uint32(p)>>10, binary.BigEndian.Uint32(p[4:]))
	}
	return out
}

func TestBlockStatus(t *testing.T) {
	s, _ := startServer(t, 8<<20, 512, ExportOptions{})
	c := dialMeta(t, s)
	if c.writeAt(0, 1<<20+4096, pattern(4096, 1)) != 0 || c.writeAt(0, 3<<20, pattern(512, 2)) != 0 {
		t.Fatal("write failed")
	}
	if code := c.do(0, cmdBlockStatus, 0, 8<<20, nil, nil); code != 0 {
		t.Fatalf("BLOCK_STATUS: %d", code)
	}
	// KiB:flags — hole+zero = 3, allocated = 0.
	if got, want := extents(c), "1024:3 1024:0 1024:3 1024:0 4096:3 "; got != want {
		t.Fatalf("extents %q, want %q", got, want)
	}
	if code := c.do(cmdFlagReqOne, cmdBlockStatus, 512, 4<<20, nil, nil); code != 0 {
		t.Fatalf("BLOCK_STATUS REQ_ONE: %d", code)
	}
	if got := binary.BigEndian.Uint32(c.bs[4:]); len(c.bs) != 12 || got != 1<<20-512 {
		t.Fatalf("REQ_ONE extents: %d bytes, first %d", len(c.bs), got)
	}
	for _, tc := range []struct {
		flags  uint16
		off    uint64
		length uint32
	}{{0, 0, 0}, {0, 8 << 20, 512}, {0, 100, 512}, {cmdFlagNoHole, 0, 512}} {
		if code := c.do(tc.flags, cmdBlockStatus, tc.off, tc.length, nil, nil); code != errInval {
			t.Errorf("BLOCK_STATUS %+v: %d, want EINVAL", tc, code)
		}
	}
	// Without SET_META_CONTEXT block status is refused.
	plain := dial(t, s.Addr(), "disk", true)
	if code := plain.do(0, cmdBlockStatus, 0, 512, nil, nil); code != errInval {
		t.Fatalf("BLOCK_STATUS without context: %d", code)
	}
	// A device without Allocation reports one allocated extent.
	if err := s.RemoveExport("disk"); err != nil {
		t.Fatal(err)
	}
	m, _ := blockdevMalloc(t, 2<<20)
	if err := s.AddExport("disk", slowDevice{m, 0}, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	c = dialMeta(t, s)
	if code := c.do(0, cmdBlockStatus, 0, 2<<20, nil, nil); code != 0 {
		t.Fatalf("BLOCK_STATUS: %d", code)
	}
	if got := extents(c); got != "2048:0 " {
		t.Fatalf("extents without Allocation: %q", got)
	}
}

func blockdevMalloc(t *testing.T, size int64) (blockdev.Device, error) {
	t.Helper()
	d, err := blockdev.NewMalloc("m", size, 512)
	if err != nil {
		t.Fatal(err)
	}
	return d, nil
}
