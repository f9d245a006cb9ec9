package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// startRawServer starts a server with one malloc export "disk" whose
// device always counts as fast, so that queue-depth-1 clients get raw mode
// under the race detector too (it slows the malloc device past
// fastDeviceNs).
func startRawServer(t *testing.T, size int64) *Server {
	t.Helper()
	s, _ := startServer(t, size, 512, ExportOptions{})
	s.fastNs.Store(int64(time.Second))
	return s
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// threadsInPoll counts the process's threads sleeping in poll(2) (-1 when
// /proc does not tell).
func threadsInPoll() int {
	tasks, err := filepath.Glob("/proc/self/task/*/wchan")
	if err != nil || len(tasks) == 0 {
		return -1
	}
	n := 0
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		if strings.Contains(string(b), "poll_schedule_timeout") {
			n++
		}
	}
	return n
}

// checkGoroutines fails if more than one goroutine beyond before is left
// after 5 s.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+1 {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines left (before %d):\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// qd1 writes and reads back n requests one at a time, sizes cycling
// through 4 KiB, 512 B and 128 KiB (a reply large enough for writev).
func qd1RoundTrips(t *testing.T, c *testClient, n int, seed byte) {
	t.Helper()
	sizes := []int{4096, 512, 128 << 10}
	for i := 0; i < n; i++ {
		size := sizes[i%len(sizes)]
		off := uint64(i%16) * (128 << 10)
		p := pattern(size, seed+byte(i))
		if code := c.writeAt(0, off, p); code != 0 {
			t.Fatalf("write %d: error %d", i, code)
		}
		got, code := c.read(off, size)
		if code != 0 || !bytes.Equal(got, p) {
			t.Fatalf("read %d (%d bytes): error %d, data equal %v", i, size, code, bytes.Equal(got, p))
		}
	}
}

// A queue-depth-1 client is served with its socket out of the netpoller:
// reads and writes of every size, simple and structured replies, with the
// data verified.
func TestRawModeQD1(t *testing.T) {
	for _, structured := range []bool{false, true} {
		name := "simple"
		if structured {
			name = "structured"
		}
		t.Run(name, func(t *testing.T) {
			s := startRawServer(t, 4<<20)
			c := dial(t, s.Addr(), "disk", structured)
			qd1RoundTrips(t, c, 150, 1)
			if s.rawEnters.Load() == 0 || s.rawConns.Load() != 1 {
				t.Fatalf("raw mode entered %d times, %d connections raw; want it raw", s.rawEnters.Load(), s.rawConns.Load())
			}
			if n := s.pollWaits.Load(); n < 150 {
				t.Errorf("%d reads waited in poll(2) for 300 requests; want most", n)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			c.expectEOF()
			if n := s.rawConns.Load(); n != 0 {
				t.Errorf("%d connections still raw after Close", n)
			}
		})
	}
}

// A client that starts pipelining puts the socket back into the
// netpoller; back at queue depth 1 it leaves it again.
func TestRawModeDeepQueueSwitch(t *testing.T) {
	s := startRawServer(t, 4<<20)
	c := dial(t, s.Addr(), "disk", false)
	qd1RoundTrips(t, c, 30, 7)
	if s.rawConns.Load() != 1 {
		t.Fatal("not in raw mode after queue-depth-1 requests")
	}
	enters := s.rawEnters.Load()

	// 32 in flight, each batch sent with one write: writes of distinct
	// patterns, then reads of them.
	const depth, rounds = 32, 20
	const bs = 4096
	buf := make([]byte, bs)
	for r := 0; r < rounds; r++ {
		var batch []byte
		want := map[uint64]bool{}
		for i := 0; i < depth; i++ {
			batch = appendRequest(c, batch, cmdWrite, uint64(i)*bs, bs, pattern(bs, byte(r*depth+i)))
			want[c.next] = true
		}
		c.write(batch)
		for i := 0; i < depth; i++ {
			ck, code, err := c.recv(func(uint64) (uint32, uint64) { return 0, 0 }, nil)
			if err != nil || code != 0 || !want[ck] {
				t.Fatalf("round %d write reply %d: cookie %d code %d err %v", r, i, ck, code, err)
			}
		}
		batch = batch[:0]
		blocks := map[uint64]int{}
		for i := 0; i < depth; i++ {
			batch = appendRequest(c, batch, cmdRead, uint64(i)*bs, bs, nil)
			blocks[c.next] = i
		}
		c.write(batch)
		for i := 0; i < depth; i++ {
			ck, code, err := c.recv(func(uint64) (uint32, uint64) { return bs, 0 }, buf)
			if err != nil || code != 0 {
				t.Fatalf("round %d read reply %d: code %d err %v", r, i, code, err)
			}
			if !bytes.Equal(buf, pattern(bs, byte(r*depth+blocks[ck]))) {
				t.Fatalf("round %d: read of block %d returned wrong data", r, blocks[ck])
			}
		}
	}
	if n := s.rawConns.Load(); n != 0 {
		t.Fatalf("%d connections raw while pipelining; want the netpoller", n)
	}
	qd1RoundTrips(t, c, 30, 9)
	if s.rawConns.Load() != 1 || s.rawEnters.Load() <= enters {
		t.Fatalf("raw mode not entered again at queue depth 1 (enters %d → %d)", enters, s.rawEnters.Load())
	}
}

// An idle connection puts its socket back into the netpoller after
// rawIdleMs, so no thread stays blocked in poll(2); the next request
// works and brings raw mode back.
func TestRawModeIdleLeaves(t *testing.T) {
	s := startRawServer(t, 4<<20)
	c := dial(t, s.Addr(), "disk", false)
	qd1RoundTrips(t, c, 30, 3)
	if s.rawConns.Load() != 1 {
		t.Fatal("not in raw mode after queue-depth-1 requests")
	}
	// The reader goes back to poll(2) right after the last reply.
	polling := -1
	for end := time.Now().Add(rawIdleMs / 2 * time.Millisecond); polling <= 0 && time.Now().Before(end); {
		polling = threadsInPoll()
		time.Sleep(time.Millisecond)
	}
	if polling == 0 {
		t.Errorf("no thread waits in poll(2) with the connection raw")
	}
	waits := s.pollWaits.Load()
	waitFor(t, "the idle connection to leave raw mode", func() bool { return s.rawConns.Load() == 0 })
	time.Sleep(3 * rawIdleMs * time.Millisecond)
	if n := threadsInPoll(); n > 0 {
		t.Errorf("%d threads still wait in poll(2) after the connection went idle", n)
	}
	if d := s.pollWaits.Load() - waits; d > 1 {
		t.Errorf("idle connection polled %d more times; want it parked", d)
	}
	enters := s.rawEnters.Load()
	qd1RoundTrips(t, c, 10, 5)
	if s.rawConns.Load() != 1 || s.rawEnters.Load() != enters+1 {
		t.Fatalf("after idle: raw %d, enters %d → %d; want raw again", s.rawConns.Load(), enters, s.rawEnters.Load())
	}
}

// Close and RemoveExport end a connection whose reader waits in poll(2)
// at once, and leave no goroutine behind.
func TestRawModeShutdownWhilePolling(t *testing.T) {
	for _, how := range []string{"Close", "RemoveExport"} {
		t.Run(how, func(t *testing.T) {
			before := runtime.NumGoroutine()
			s := startRawServer(t, 4<<20)
			s.rawIdleMs.Store(60_000)
			c := dial(t, s.Addr(), "disk", true)
			qd1RoundTrips(t, c, 20, 11)
			time.Sleep(20 * time.Millisecond) // the reader is back in poll(2)
			if s.rawConns.Load() != 1 {
				t.Fatal("not in raw mode")
			}
			start := time.Now()
			var err error
			if how == "Close" {
				err = s.Close()
			} else {
				err = s.RemoveExport("disk")
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("%s took %v with the reader in poll(2)", how, d)
			}
			c.expectEOF()
			if n := s.rawConns.Load(); n != 0 {
				t.Errorf("%d connections raw after %s", n, how)
			}
			s.Close()
			c.nc.Close()
			checkGoroutines(t, before)
		})
	}
}

// A client that disconnects while the reader waits in poll(2) ends the
// connection; the server goes on serving others.
func TestRawModeClientDisconnect(t *testing.T) {
	before := runtime.NumGoroutine()
	s := startRawServer(t, 4<<20)
	s.rawIdleMs.Store(60_000)
	c := dial(t, s.Addr(), "disk", false)
	qd1RoundTrips(t, c, 20, 13)
	if s.rawConns.Load() != 1 {
		t.Fatal("not in raw mode")
	}
	c.nc.Close()
	waitFor(t, "the server to drop the connection", func() bool {
		return s.Exports()[0].Connections == 0 && s.rawConns.Load() == 0
	})
	c2 := dial(t, s.Addr(), "disk", false)
	qd1RoundTrips(t, c2, 10, 17)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c2.expectEOF()
	checkGoroutines(t, before)
}

// appendRequest appends a request (and its payload) to b, with the
// client's next cookie.
func appendRequest(c *testClient, b []byte, typ uint16, off uint64, length uint32, payload []byte) []byte {
	c.next++
	var h [28]byte
	binary.BigEndian.PutUint32(h[0:], 0x25609513)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], c.next)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
	return append(append(b, h[:]...), payload...)
}

// sendBigRead sends a READ whose reply cannot fit in the socket buffers
// and does not read it, after checking that the connection is raw.
func sendBigRead(t *testing.T, s *Server, c *testClient) {
	t.Helper()
	qd1RoundTrips(t, c, 20, 19)
	if s.rawConns.Load() != 1 {
		t.Fatal("not in raw mode")
	}
	c.send(0, cmdRead, 0, maxPayload, nil)
}

// A write that fails in raw mode (the client resets the connection with
// a large reply unread) ends the connection.
func TestRawModeWriteError(t *testing.T) {
	before := runtime.NumGoroutine()
	s := startRawServer(t, 64<<20)
	s.rawIdleMs.Store(60_000)
	c := dial(t, s.Addr(), "disk", false)
	sendBigRead(t, s, c)
	// Let the reply fill the socket buffers, then reset.
	time.Sleep(50 * time.Millisecond)
	if err := c.nc.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.nc.Close()
	waitFor(t, "the server to drop the connection", func() bool {
		return s.Exports()[0].Connections == 0 && s.rawConns.Load() == 0
	})
	c2 := dial(t, s.Addr(), "disk", false)
	qd1RoundTrips(t, c2, 10, 23)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkGoroutines(t, before)
}

// A raw-mode writer blocked on a client that stopped reading gets
// drainTimeout after a shutdown, as in netpoll mode; then the connection
// ends.
func TestRawModeStalledWriterShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	s := startRawServer(t, 64<<20)
	s.rawIdleMs.Store(60_000)
	c := dial(t, s.Addr(), "disk", false)
	sendBigRead(t, s, c)
	time.Sleep(50 * time.Millisecond) // the writer now waits for socket space
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	if d < drainTimeout/2 || d > drainTimeout+2*time.Second {
		t.Errorf("Close took %v with a stalled writer; want about drainTimeout (%v)", d, drainTimeout)
	}
	// What the client gets is a reply cut short: the header, part of the
	// data, then EOF.
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [16]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil || binary.BigEndian.Uint32(h[:]) != 0x67446698 {
		t.Fatalf("reply header % x, err %v", h, err)
	}
	n, err := io.Copy(io.Discard, c.br)
	if err != nil || n >= maxPayload {
		t.Errorf("after the header: %d bytes, err %v; want a cut-short reply and EOF", n, err)
	}
	c.nc.Close()
	checkGoroutines(t, before)
}
