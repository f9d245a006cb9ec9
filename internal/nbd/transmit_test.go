package nbd

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func TestCommands(t *testing.T) {
	for _, sr := range []bool{false, true} {
		t.Run(fmt.Sprintf("structured=%v", sr), func(t *testing.T) {
			s, _ := startServer(t, 4<<20, 512, ExportOptions{})
			c := dial(t, s.Addr(), "disk", sr)
			p := pattern(64<<10, 1)
			if code := c.writeAt(0, 4096, p); code != 0 {
				t.Fatalf("write: %d", code)
			}
			if got, code := c.read(4096, len(p)); code != 0 || !bytes.Equal(got, p) {
				t.Fatalf("read back: code %d equal %v", code, bytes.Equal(got, p))
			}
			if code := c.writeAt(cmdFlagFUA, 1<<20, p[:512]); code != 0 {
				t.Fatalf("FUA write: %d", code)
			}
			if code := c.do(0, cmdFlush, 0, 0, nil, nil); code != 0 {
				t.Fatalf("flush: %d", code)
			}
			if code := c.do(0, cmdTrim, 4096, 4096, nil, nil); code != 0 {
				t.Fatalf("trim: %d", code)
			}
			if got, _ := c.read(4096, 4096); !bytes.Equal(got, make([]byte, 4096)) {
				t.Fatal("malloc trim did not zero")
			}
			if code := c.do(cmdFlagNoHole, cmdWriteZeroes, 8192, 8192, nil, nil); code != 0 {
				t.Fatalf("write zeroes NO_HOLE: %d", code)
			}
			if code := c.do(cmdFlagFUA, cmdWriteZeroes, 16384, 512, nil, nil); code != 0 {
				t.Fatalf("write zeroes FUA: %d", code)
			}
			got, _ := c.read(4096, len(p))
			want := append(make([]byte, 4096+8192+512), p[4096+8192+512:]...)
			if !bytes.Equal(got, want) {
				t.Fatal("contents after trim/zero differ")
			}
			if code := c.do(0, cmdCache, 0, 4096, nil, nil); code != 0 {
				t.Fatalf("cache: %d", code)
			}
			if _, code := c.read(0, 0); code != 0 {
				t.Fatalf("zero-length read: %d", code)
			}
			big := make([]byte, 4<<20)
			if code := c.do(0, cmdRead, 0, 4<<20, nil, big); code != 0 || !bytes.Equal(big[4096+len(p):4096+len(p)+4096], make([]byte, 4096)) {
				t.Fatalf("whole-device read: %d", code)
			}
		})
	}
}

func TestRequestErrors(t *testing.T) {
	for _, sr := range []bool{false, true} {
		t.Run(fmt.Sprintf("structured=%v", sr), func(t *testing.T) {
			s, _ := startServer(t, 1<<20, 4096, ExportOptions{})
			c := dial(t, s.Addr(), "disk", sr)
			cases := []struct {
				name       string
				flags, typ uint16
				off        uint64
				length     uint32
				want       uint32
			}{
				{"read past end", 0, cmdRead, 1 << 20, 4096, errInval},
				{"read wraps", 0, cmdRead, ^uint64(0) - 4095, 8192, errInval},
				{"read misaligned off", 0, cmdRead, 512, 4096, errInval},
				{"read misaligned len", 0, cmdRead, 0, 512, errInval},
				{"read too big", 0, cmdRead, 0, maxPayload + 4096, errInval},
				{"trim past end", 0, cmdTrim, 1 << 20, 4096, errInval},
				{"zeroes past end", 0, cmdWriteZeroes, 1<<20 - 4096, 8192, errNoSpc},
				{"zeroes bad flag", cmdFlagFastZero, cmdWriteZeroes, 0, 4096, errInval},
				{"read NO_HOLE", cmdFlagNoHole, cmdRead, 0, 4096, errInval},
				{"flush bad flag", 0x80, cmdFlush, 0, 0, errInval},
				{"block status", 0, cmdBlockStatus, 0, 4096, errInval},
				{"unknown command", 0, 42, 0, 0, errInval},
				{"resize", 0, 8, 0, 0, errInval},
			}
			for _, tc := range cases {
				if code := c.do(tc.flags, tc.typ, tc.off, tc.length, nil, nil); code != tc.want {
					t.Errorf("%s: error %d, want %d", tc.name, code, tc.want)
				}
			}
			if code := c.writeAt(0, 1<<20, make([]byte, 4096)); code != errNoSpc {
				t.Errorf("write past end: %d", code)
			}
			if code := c.writeAt(0, 100, make([]byte, 4096)); code != errInval {
				t.Errorf("misaligned write: %d", code)
			}
			// The connection still works after errors.
			if code := c.writeAt(0, 0, pattern(4096, 9)); code != 0 {
				t.Fatalf("write after errors: %d", code)
			}
			// An oversized WRITE cannot be skipped: the server disconnects.
			c.send(0, cmdWrite, 0, maxPayload+4096, nil)
			c.expectEOF()
			// As does a bad request magic.
			c = dial(t, s.Addr(), "disk", sr)
			c.write(bytes.Repeat([]byte{0xee}, 28))
			c.expectEOF()
		})
	}
}

// TestInFlight pipelines many requests on one connection and matches the
// (possibly reordered) replies by cookie.
func TestInFlight(t *testing.T) {
	for _, mode := range []struct{ sr, slow, async bool }{{false, false, false}, {true, false, false}, {false, true, false}, {true, true, false}, {false, true, true}, {true, true, true}} {
		t.Run(fmt.Sprintf("structured=%v/slow=%v/async=%v", mode.sr, mode.slow, mode.async), func(t *testing.T) {
			sr := mode.sr
			s, dev := startServer(t, 16<<20, 512, ExportOptions{})
			if mode.async { // an asynchronous device answers from its own goroutines
				s.RemoveExport("disk")
				ad := &asyncTestDevice{Device: slowDevice{dev, 300 * time.Microsecond}}
				if err := s.AddExport("disk", ad, ExportOptions{}); err != nil {
					t.Fatal(err)
				}
				defer func() {
					t.Logf("async device: %d started, %d refused", ad.started.Load(), ad.refused.Load())
					if ad.started.Load() == 0 || ad.refused.Load() == 0 {
						t.Errorf("async device: %d started, %d refused; want both > 0", ad.started.Load(), ad.refused.Load())
					}
				}()
				mode.slow = false
			}
			if mode.slow { // a slow device forces the worker path
				s.RemoveExport("disk")
				if err := s.AddExport("disk", slowDevice{dev, 300 * time.Microsecond}, ExportOptions{}); err != nil {
					t.Fatal(err)
				}
				defer func() {
					if s.workerStarts.Load() == 0 {
						t.Error("slow device: no worker was started")
					}
				}()
			}
			c := dial(t, s.Addr(), "disk", sr)
			const n = 200 // more than numSlots: exercises back-pressure
			const bs = 8192
			type op struct {
				off uint64
				n   uint32
			}
			ops := map[uint64]op{}
			var mu sync.Mutex
			errc := make(chan error, 1)
			bufs := map[uint64][]byte{}
			go func() { // send all writes without waiting
				for i := 0; i < n; i++ {
					mu.Lock()
					ck := c.next + 1
					ops[ck] = op{uint64(i * bs), 0}
					mu.Unlock()
					c.send(0, cmdWrite, uint64(i*bs), bs, pattern(bs, byte(i)))
				}
				errc <- nil
			}()
			for i := 0; i < n; i++ {
				ck, code, err := c.recv(func(uint64) (uint32, uint64) { return 0, 0 }, nil)
				if err != nil || code != 0 {
					t.Fatalf("write reply %d: %v code %d", i, err, code)
				}
				mu.Lock()
				if _, ok := ops[ck]; !ok {
					t.Fatalf("unknown or duplicate cookie %d", ck)
				}
				delete(ops, ck)
				mu.Unlock()
			}
			<-errc
			go func() {
				for i := 0; i < n; i++ {
					mu.Lock()
					ck := c.next + 1
					ops[ck] = op{uint64(i * bs), bs}
					bufs[ck] = make([]byte, bs)
					mu.Unlock()
					c.send(0, cmdRead, uint64(i*bs), bs, nil)
				}
				errc <- nil
			}()
			scratch := make([]byte, bs)
			for i := 0; i < n; i++ {
				var cur op
				ck, code, err := c.recv(func(ck uint64) (uint32, uint64) {
					mu.Lock()
					defer mu.Unlock()
					cur = ops[ck]
					return cur.n, cur.off
				}, scratch)
				if err != nil || code != 0 {
					t.Fatalf("read reply %d: %v code %d", i, err, code)
				}
				if !bytes.Equal(scratch, pattern(bs, byte(cur.off/bs))) {
					t.Fatalf("read cookie %d offset %d: wrong data", ck, cur.off)
				}
				mu.Lock()
				delete(ops, ck)
				mu.Unlock()
			}
			<-errc
		})
	}
}

// TestMultiConn: a write acknowledged on one connection and flushed on a
// second is visible to a read on a third, and concurrent clients work.
func TestMultiConn(t *testing.T) {
	s, _ := startServer(t, 8<<20, 512, ExportOptions{})
	a := dial(t, s.Addr(), "disk", false)
	b := dial(t, s.Addr(), "disk", true)
	cc := dial(t, s.Addr(), "disk", false)
	if a.tflags&tflagCanMultiConn == 0 {
		t.Fatal("CAN_MULTI_CONN not advertised")
	}
	p := pattern(4096, 3)
	if a.writeAt(0, 0, p) != 0 || b.do(0, cmdFlush, 0, 0, nil, nil) != 0 {
		t.Fatal("write/flush failed")
	}
	if got, _ := cc.read(0, 4096); !bytes.Equal(got, p) {
		t.Fatal("third connection does not see the write")
	}
	if n := s.Exports()[0].Connections; n != 3 {
		t.Fatalf("Connections = %d", n)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := dial(t, s.Addr(), "disk", i%2 == 0)
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for j := 0; j < 200; j++ {
				off := uint64(i)<<20 + uint64(rng.IntN(255))*4096
				d := pattern(4096, byte(j))
				if c.writeAt(0, off, d) != 0 {
					t.Error("write failed")
					return
				}
				if got, _ := c.read(off, 4096); !bytes.Equal(got, d) {
					t.Error("read-back mismatch")
					return
				}
			}
		}(i)
	}
	wg.Wait()
}

func TestDiscDrains(t *testing.T) {
	s, _ := startServer(t, 1<<20, 512, ExportOptions{})
	c := dial(t, s.Addr(), "disk", false)
	var cks []uint64
	for i := 0; i < 8; i++ {
		cks = append(cks, c.send(0, cmdWrite, uint64(i)*4096, 4096, pattern(4096, byte(i))))
	}
	c.send(0, cmdDisc, 0, 0, nil)
	for range cks {
		if _, code, err := c.recv(func(uint64) (uint32, uint64) { return 0, 0 }, nil); err != nil || code != 0 {
			t.Fatalf("reply after DISC: %v %d", err, code)
		}
	}
	c.expectEOF()
}

func TestRemoveExportWhileConnected(t *testing.T) {
	s, dev := startServer(t, 1<<20, 512, ExportOptions{})
	c := dial(t, s.Addr(), "disk", true)
	if c.writeAt(0, 0, pattern(512, 1)) != 0 {
		t.Fatal("write failed")
	}
	idle := dialRaw(t, s.Addr()) // still negotiating
	idle.sendFlags(3)
	done := make(chan error, 1)
	go func() { done <- s.RemoveExport("disk") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RemoveExport hung")
	}
	c.expectEOF()
	if len(s.Exports()) != 0 {
		t.Fatal("export still listed")
	}
	if typ, _ := idle.info(optGo, "disk"); typ != repErrUnknown {
		t.Fatalf("GO on removed export: %#x", typ)
	}
	// The device is the caller's again; re-adding works.
	if err := s.AddExport("disk", dev, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	c = dial(t, s.Addr(), "disk", false)
	if got, _ := c.read(0, 512); !bytes.Equal(got, pattern(512, 1)) {
		t.Fatal("data lost across re-export")
	}
}

func TestCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	s, _ := startServer(t, 1<<20, 512, ExportOptions{})
	var clients []*testClient
	for i := 0; i < 3; i++ {
		c := dial(t, s.Addr(), "disk", i == 1)
		// Get workers started with a burst.
		for j := 0; j < 16; j++ {
			c.send(0, cmdRead, 0, 4096, nil)
		}
		clients = append(clients, c)
	}
	half := dialRaw(t, s.Addr())
	half.sendFlags(3)
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		c.expectEOF()
	}
	half.expectEOF()
	checkGoroutines(t, before)
	if _, err := s.Exports(), s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestStartContextCancel(t *testing.T) {
	s := NewServer(Config{ListenAddr: "127.0.0.1:0", Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	dev, _ := blockdev.NewMalloc("d", 1<<20, 512)
	if err := s.AddExport("disk", dev, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.Addr(), "disk", false)
	cancel()
	c.expectEOF()
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close after cancel hung")
	}
}

// slowDevice delays reads and writes, like a disk.
type slowDevice struct {
	blockdev.Device
	d time.Duration
}

func (s slowDevice) ReadAt(p []byte, off int64) (int, error) {
	time.Sleep(s.d)
	return s.Device.ReadAt(p, off)
}

func (s slowDevice) WriteAt(p []byte, off int64) (int, error) {
	time.Sleep(s.d)
	return s.Device.WriteAt(p, off)
}

// asyncTestDevice implements asyncDevice like blockdev.Uring: StartQueued
// queues, Submit runs the queued I/O on other goroutines after a delay,
// each reporting IODone, then IOFlush. Every fifth StartQueued is refused
// (the caller must fall back). I/O never submitted would hang the test.
type asyncTestDevice struct {
	blockdev.Device
	calls, started, refused atomic.Int64
	mu                      sync.Mutex
	pending                 []func()
}

func (d *asyncTestDevice) StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool {
	if d.calls.Add(1)%5 == 0 {
		d.refused.Add(1)
		return false
	}
	d.started.Add(1)
	d.mu.Lock()
	d.pending = append(d.pending, func() {
		time.Sleep(200 * time.Microsecond)
		var n int
		var err error
		if write {
			n, err = d.Device.WriteAt(p, off)
		} else {
			n, err = d.Device.ReadAt(p, off)
		}
		cb.IODone(n, err)
		cb.IOFlush()
	})
	d.mu.Unlock()
	return true
}

func (d *asyncTestDevice) Submit() {
	d.mu.Lock()
	fs := d.pending
	d.pending = nil
	d.mu.Unlock()
	for _, f := range fs {
		go f()
	}
}

// TestLargeRequestsBudget pipelines more large requests than the
// per-connection byte budget admits at once.
func TestLargeRequestsBudget(t *testing.T) {
	s, dev := startServer(t, 128<<20, 512, ExportOptions{})
	s.RemoveExport("disk")
	if err := s.AddExport("disk", slowDevice{dev, 2 * time.Millisecond}, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.Addr(), "disk", true)
	const n, size = 100, 1 << 20
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; i < n; i++ {
			c.send(0, cmdWrite, uint64(i%120)*size, size, pattern(size, byte(i)))
		}
	}()
	for i := 0; i < n; i++ {
		if _, code, err := c.recv(func(uint64) (uint32, uint64) { return 0, 0 }, nil); err != nil || code != 0 {
			t.Fatalf("write %d: %v %d", i, err, code)
		}
	}
	<-sent
	for i := 0; i < n; i += 17 {
		if got, code := c.read(uint64(i)*size, size); code != 0 || !bytes.Equal(got, pattern(size, byte(i))) {
			t.Fatalf("read %d: code %d", i, code)
		}
	}
}
