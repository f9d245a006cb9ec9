package nbd

import (
	"bytes"
	"testing"
	"time"
)

func TestPollFirstDecision(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dev      bool
		inflight int32
		ewmaNs   int64
		perFill  int64 // before the update
		fillReqs int64
		want     bool
	}{
		{"handshake", false, 0, 0, 0, 0, false},
		{"qd1 fast device", true, 0, 2_000, perFillScale, 1, true},
		{"first read of a connection", true, 0, 0, 0, 0, true},
		{"request with a worker", true, 1, 2_000, perFillScale, 1, false},
		{"slow device", true, 0, fastDeviceNs, perFillScale, 1, false},
		{"batched requests", true, 0, 2_000, 3 * perFillScale, 3, false},
		{"one batch in a qd1 stream", true, 0, 2_000, perFillScale, 2, true},
		{"qd1 after a deep phase", true, 0, 2_000, syncClientPerFill + 8, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &conn{ewmaNs: tc.ewmaNs, fastNs: fastDeviceNs, perFill: tc.perFill, fillReqs: tc.fillReqs}
			if tc.dev {
				c.dev = slowDevice{}
			}
			c.inflight.Store(tc.inflight)
			if got := c.pollFirst(); got != tc.want {
				t.Errorf("pollFirst = %v, want %v (perFill now %d)", got, tc.want, c.perFill)
			}
			if c.fillReqs != 0 {
				t.Errorf("fillReqs = %d after pollFirst, want 0", c.fillReqs)
			}
		})
	}
}

// A queue-depth-1 client on a memory export is served through poll(2)
// (in raw mode, see rawsock_test.go); an idle connection parks in the
// netpoller instead of polling on, and a server shutdown ends it at once.
func TestPollFirstQD1(t *testing.T) {
	s, _ := startServer(t, 4<<20, 512, ExportOptions{})
	c := dial(t, s.Addr(), "disk", true)
	for i := 0; i < 300; i++ {
		off := uint64(i%64) * 8192
		p := pattern(8192, byte(i))
		if code := c.writeAt(0, off, p); code != 0 {
			t.Fatalf("write %d: error %d", i, code)
		}
		got, code := c.read(off, len(p))
		if code != 0 || !bytes.Equal(got, p) {
			t.Fatalf("read %d: error %d, data equal %v", i, code, bytes.Equal(got, p))
		}
	}
	n := s.pollWaits.Load()
	if n < 300 && !raceEnabled {
		t.Errorf("%d socket reads waited in poll(2) for 600 sequential requests; want most", n)
	}
	time.Sleep(50 * time.Millisecond)
	if d := s.pollWaits.Load() - n; d > 1 {
		t.Errorf("idle connection polled %d more times in 50ms; want it parked", d)
	}
	if _, code := c.read(0, 512); code != 0 {
		t.Fatalf("read after idle: error %d", code)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.expectEOF()
	if d := time.Since(start); d > time.Second {
		t.Errorf("close took %v with the reader waiting in poll(2)", d)
	}
}

// A client keeping many requests in flight leaves the poll(2) path.
func TestPollFirstDeepQueue(t *testing.T) {
	s, _ := startServer(t, 4<<20, 512, ExportOptions{})
	c := dial(t, s.Addr(), "disk", false)
	const batches, depth = 50, 32
	for b := 0; b < batches; b++ {
		for i := 0; i < depth; i++ {
			c.send(0, cmdRead, uint64(i)*4096, 4096, nil)
		}
		buf := make([]byte, 4096)
		for i := 0; i < depth; i++ {
			if _, code, err := c.recv(func(uint64) (uint32, uint64) { return 4096, 0 }, buf); err != nil || code != 0 {
				t.Fatalf("batch %d reply %d: code %d err %v", b, i, code, err)
			}
		}
	}
	if n := s.pollWaits.Load(); n > batches*depth/4 {
		t.Errorf("%d poll(2) waits for %d pipelined requests; want the netpoller path", n, batches*depth)
	}
}
