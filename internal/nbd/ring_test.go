package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// startUringServer starts a server exporting a uring device on a zeroed
// file as "disk".
func startUringServer(t *testing.T, size int64, cfg Config) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	dev, err := blockdev.OpenUring(path, blockdev.FileOptions{BlockSize: 4096})
	if err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	cfg.ListenAddr, cfg.Logger = "127.0.0.1:0", quietLogger()
	s := NewServer(cfg)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); dev.Close() })
	if err := s.AddExport("disk", dev, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRingModeVerify: four connections on a uring export pipeline 32
// writes each (4 KiB to 128 KiB), then 32 reads, interleaved; every
// connection is in ring mode, replies carry the right data, and leaving
// ends ring mode and leaks nothing.
func TestRingModeVerify(t *testing.T) {
	const size, conns, qd, rounds = 32 << 20, 4, 32, 6
	before := runtime.NumGoroutine()
	s := startUringServer(t, size, Config{})
	cs := make([]*testClient, conns)
	for i := range cs {
		cs[i] = dial(t, s.Addr(), "disk", i%2 == 1) // half with structured replies
	}
	model := make([]byte, size)
	sizes := []int{4096, 8192, 65536, 131072}
	for round := range rounds {
		type io struct {
			off  uint64
			data []byte
		}
		ios := make([][]io, conns)
		// Distinct 128 KiB-aligned areas per connection and request, so
		// concurrent writes never overlap.
		areas := rand.Perm(size / (128 << 10))
		for ci, c := range cs {
			for k := range qd {
				n := sizes[(k+round)%len(sizes)]
				off := uint64(areas[ci*qd+k]) * (128 << 10)
				p := make([]byte, n)
				for j := range p {
					p[j] = byte(round*7 + ci*31 + k + j/4096)
				}
				c.send(0, cmdWrite, off, uint32(n), p)
				ios[ci] = append(ios[ci], io{off, p})
				copy(model[off:], p)
			}
		}
		for _, c := range cs {
			for range qd {
				if _, code, err := c.recv(func(uint64) (uint32, uint64) { return 0, 0 }, nil); err != nil || code != 0 {
					t.Fatalf("write reply: %v, code %d", err, code)
				}
			}
		}
		for ci, c := range cs {
			got := make(map[uint64][]byte, qd)
			cookies := make(map[uint64]io, qd)
			for _, w := range ios[ci] {
				cookies[c.send(0, cmdRead, w.off, uint32(len(w.data)), nil)] = w
			}
			buf := make([]byte, 128<<10)
			for range qd {
				ck, code, err := c.recv(func(ck uint64) (uint32, uint64) {
					w := cookies[ck]
					return uint32(len(w.data)), w.off
				}, buf)
				if err != nil || code != 0 {
					t.Fatalf("read reply: %v, code %d", err, code)
				}
				got[ck] = bytes.Clone(buf[:len(cookies[ck].data)])
			}
			for ck, w := range cookies {
				if !bytes.Equal(got[ck], model[w.off:w.off+uint64(len(w.data))]) {
					t.Fatalf("round %d, connection %d: read at %d returned other data", round, ci, w.off)
				}
			}
		}
	}
	if n := s.ringEnters.Load(); n < conns {
		t.Errorf("ring mode entered %d times by %d pipelining connections", n, conns)
	}
	if s.directWrites.Load() == 0 {
		t.Error("no reply was written by the reader that reaped it")
	}
	// Large READ replies (64 and 128 KiB, half of the reads) go out on the
	// ring thread too, copied into the direct batch, rather than waking
	// the replier for a writev.
	large := int64(rounds * conns * qd / 2)
	t.Logf("large read replies %d, by the replier's writev %d", large, s.largeWritevs.Load())
	if s.largeWritevs.Load() > large/4 {
		t.Errorf("%d of %d large read replies waited for the replier", s.largeWritevs.Load(), large)
	}
	for _, c := range cs {
		c.nc.Close()
	}
	waitFor(t, "ring mode to end", func() bool { return s.ringConns.Load() == 0 && s.rawConns.Load() == 0 })
	s.Close()
	checkGoroutines(t, before)
}

// TestRingModeClose: closing the server while a ring-mode reader waits,
// with and without requests in flight, ends the connection at once.
func TestRingModeClose(t *testing.T) {
	for _, inflight := range []bool{false, true} {
		before := runtime.NumGoroutine()
		s := startUringServer(t, 16<<20, Config{})
		s.rawIdleMs.Store(60_000) // stay in ring mode while idle
		c := dial(t, s.Addr(), "disk", false)
		pipeline(t, c, 64)
		waitFor(t, "ring mode", func() bool { return s.ringConns.Load() == 1 })
		if inflight {
			for i := range 64 {
				c.send(0, cmdRead, uint64(i)*(64<<10), 64<<10, nil) // replies left unread
			}
			time.Sleep(20 * time.Millisecond)
		}
		done := make(chan struct{})
		go func() { s.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("inflight=%v: Close did not return", inflight)
		}
		if n := s.ringConns.Load(); n != 0 {
			t.Fatalf("inflight=%v: %d connections left in ring mode", inflight, n)
		}
		c.nc.Close()
		checkGoroutines(t, before)
	}
}

// TestRingModeOff: Config.NoQueues keeps a uring export on the shared ring.
func TestRingModeOff(t *testing.T) {
	s := startUringServer(t, 16<<20, Config{NoQueues: true})
	c := dial(t, s.Addr(), "disk", false)
	p := bytes.Repeat([]byte{7}, 4096)
	for i := range 8 {
		if code := c.writeAt(0, uint64(i)*4096, p); code != 0 {
			t.Fatalf("write: code %d", code)
		}
	}
	if got, code := c.read(0, 4096); code != 0 || !bytes.Equal(got, p) {
		t.Fatalf("read back: code %d", code)
	}
	if n := s.ringConns.Load(); n != 0 {
		t.Fatalf("%d connections in ring mode with NoQueues", n)
	}
}

// pipeline sends n 4 KiB reads in one write and reads the replies.
func pipeline(t *testing.T, c *testClient, n int) {
	t.Helper()
	reqs := make([]byte, 0, n*requestHeaderLen)
	for i := range n {
		var h [requestHeaderLen]byte
		binary.BigEndian.PutUint32(h[0:], magicRequest)
		binary.BigEndian.PutUint16(h[6:], cmdRead)
		c.next++
		binary.BigEndian.PutUint64(h[8:], c.next)
		binary.BigEndian.PutUint64(h[16:], uint64(i)*4096)
		binary.BigEndian.PutUint32(h[24:], 4096)
		reqs = append(reqs, h[:]...)
	}
	if _, err := c.nc.Write(reqs); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for range n {
		if _, code, err := c.recv(func(uint64) (uint32, uint64) { return 4096, 0 }, buf); err != nil || code != 0 {
			t.Fatalf("read reply: %v, code %d", err, code)
		}
	}
}

// TestRingModeFollowsPipelining: a queue-depth-1 client stays out of ring
// mode; a client that pipelines enters it, and leaves it (socket back in
// the netpoller) once it goes back to one request at a time.
func TestRingModeFollowsPipelining(t *testing.T) {
	s := startUringServer(t, 16<<20, Config{})
	s.rawIdleMs.Store(60_000) // leave because of the client's depth, not idleness
	c := dial(t, s.Addr(), "disk", false)
	p := bytes.Repeat([]byte{3}, 4096)
	for i := range 50 {
		if code := c.writeAt(0, uint64(i)*4096, p); code != 0 {
			t.Fatalf("write: code %d", code)
		}
	}
	if n := s.ringEnters.Load(); n != 0 {
		t.Fatalf("a queue-depth-1 client entered ring mode %d times", n)
	}
	for range 4 {
		pipeline(t, c, 32)
	}
	if s.ringConns.Load() != 1 {
		t.Fatalf("a pipelining client is not in ring mode (entered %d times)", s.ringEnters.Load())
	}
	for i := range 50 {
		if got, code := c.read(uint64(i)*4096, 4096); code != 0 || !bytes.Equal(got, p) {
			t.Fatalf("read %d at queue depth 1: code %d", i, code)
		}
	}
	waitFor(t, "ring mode to end at queue depth 1", func() bool { return s.ringConns.Load() == 0 && s.rawConns.Load() == 0 })
}

// TestRingModeBudget: in ring mode, large writes beyond the connection's
// byte budget wait for the budget on the queue (their completions arrive
// only there) instead of blocking the reader for good.
func TestRingModeBudget(t *testing.T) {
	const big, n = 4 << 20, 24 // 96 MiB, past the 64 MiB budget
	s := startUringServer(t, n*big, Config{})
	s.rawIdleMs.Store(60_000) // stay in ring mode between the batches
	c := dial(t, s.Addr(), "disk", false)
	// Ring mode follows evidence of pipelining; on a loaded machine one
	// batch may not show enough of it.
	for i := 0; i < 8 && s.ringConns.Load() != 1; i++ {
		pipeline(t, c, 64)
	}
	if s.ringConns.Load() != 1 {
		t.Fatalf("a pipelining client is not in ring mode (entered %d times)", s.ringEnters.Load())
	}
	_ = c.nc.SetDeadline(time.Now().Add(60 * time.Second))
	p := bytes.Repeat([]byte{9}, big)
	for i := range n {
		c.send(0, cmdWrite, uint64(i)*big, big, p)
	}
	for range n {
		if _, code, err := c.recv(func(uint64) (uint32, uint64) { return 0, 0 }, nil); err != nil || code != 0 {
			t.Fatalf("write reply: %v, code %d", err, code)
		}
	}
	if got, code := c.read(uint64(n-1)*big, 4096); code != 0 || !bytes.Equal(got, p[:4096]) {
		t.Fatalf("read back: code %d", code)
	}
}
