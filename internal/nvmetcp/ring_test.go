package nvmetcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// ringTarget serves a uring:// file of size bytes (4 KiB blocks) and
// returns a host connected with two I/O queues.
func ringTarget(t *testing.T, cfg TargetConfig, size int64) (*Target, *Device, blockdev.Device) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	must(t, os.WriteFile(path, nil, 0o600))
	must(t, os.Truncate(path, size))
	dev, err := blockdev.NewRegistry().Open(context.Background(), "uring://"+path+"?blk_size=4096")
	if err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	if _, ok := dev.(blockdev.QueueOpener); !ok {
		t.Fatalf("uring:// device %T offers no queues", dev)
	}
	tg := startTarget(t, cfg)
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("ring"), Device: dev, AllowAnyHost: true}))
	d := dial(t, tg, Config{SubNQN: NQNFor("ring"), IOQueues: 2, QueueSize: 64})
	return tg, d, dev
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRingModeVerify: pipelined random writes (4 KiB in-capsule up to
// 128 KiB through R2T) and verified reads on a uring:// file go through
// ring mode, and the data is right; with NoQueues nothing does. Every
// queue leaves ring mode when the host goes, and no goroutine is left.
func TestRingModeVerify(t *testing.T) {
	for _, noQueues := range []bool{false, true} {
		name := "queues"
		if noQueues {
			name = "noqueues"
		}
		t.Run(name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			const size = 32 << 20
			tg, d, dev := ringTarget(t, TargetConfig{NoQueues: noQueues}, size)
			rounds := 120
			if raceEnabled {
				rounds = 30
			}
			rwVerify(t, d, 32, rounds, size/32, 32, 4096)
			must(t, d.Close())
			waitFor(t, "ring mode to end", func() bool { return tg.ringConns.Load() == 0 })
			enters := tg.ringEnters.Load()
			t.Logf("ring mode entered %d times", enters)
			if noQueues != (enters == 0) {
				t.Fatalf("NoQueues %v, ring mode entered %d times", noQueues, enters)
			}
			must(t, tg.Close())
			must(t, dev.Close())
			waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
		})
	}
}

// TestRingModeFollowsPipelining: a queue in ring mode leaves it when the
// host goes back to one command at a time, keeps serving it, and enters
// again when the host pipelines again.
func TestRingModeFollowsPipelining(t *testing.T) {
	const size = 16 << 20
	tg, d, _ := ringTarget(t, TargetConfig{}, size)
	zero := make([]byte, 1<<20)
	for round := range 2 {
		for off := int64(0); off < size; off += int64(len(zero)) { // rwVerify starts from zeros
			_, err := d.WriteAt(zero, off)
			must(t, err)
		}
		rwVerify(t, d, 32, 60, size/32, 4, 4096)
		if tg.ringEnters.Load() <= int64(round) {
			t.Fatalf("round %d: ring mode entered %d times", round, tg.ringEnters.Load())
		}
		buf := make([]byte, 4096)
		deadline := time.Now().Add(5 * time.Second)
		for tg.ringConns.Load() > 0 && time.Now().Before(deadline) {
			if _, err := d.ReadAt(buf, 0); err != nil {
				t.Fatal(err)
			}
		}
		if n := tg.ringConns.Load(); n > 0 {
			t.Fatalf("round %d: %d queues still in ring mode after 5 s at queue depth 1", round, n)
		}
		for range 100 { // served after leaving
			if _, err := d.WriteAt(buf, 8192); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRingModeClose: closing the target while hosts pipeline on queues in
// ring mode wakes their readers (shutdown(2) fires the poll armed in the
// ring), ends every command and leaves nothing running.
func TestRingModeClose(t *testing.T) {
	before := runtime.NumGoroutine()
	const size = 16 << 20
	tg, d, dev := ringTarget(t, TargetConfig{}, size)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			buf := make([]byte, 8192)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				off := int64((w*64+i%64)*8192) % size
				var err error
				if i%2 == 0 {
					_, err = d.WriteAt(buf, off)
				} else {
					_, err = d.ReadAt(buf, off)
				}
				if err != nil {
					return
				}
			}
		})
	}
	waitFor(t, "ring mode", func() bool { return tg.ringConns.Load() > 0 })
	done := make(chan error, 1)
	go func() { done <- tg.Close() }()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Target.Close hangs with queues in ring mode")
	}
	close(stop)
	d.Close()
	wg.Wait()
	if n := tg.ringConns.Load(); n != 0 {
		t.Fatalf("%d queues in ring mode after Close", n)
	}
	must(t, dev.Close())
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// TestQsockShutdownRaw: shutdown of a raw socket fails a writer blocked on
// a host that does not read, and a write deadline set in raw mode applies.
func TestQsockShutdownRaw(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	c1, c2 := tcpPair(t)
	defer c2.Close()
	q := newQueue(tg, c1)
	q.enterRaw()
	if !q.sock.raw {
		t.Fatal("socket did not go raw")
	}
	q.sock.setWriteDeadline(time.Now().Add(200 * time.Millisecond))
	big := make([]byte, 64<<20)
	start := time.Now()
	_, err := q.sock.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("raw write past its deadline: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("deadline took %v", d)
	}
	q.sock.wdeadline.Store(0)
	errc := make(chan error, 1)
	go func() { _, err := q.sock.Write(big); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	q.shutdown()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("write on a shut down socket succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not fail a blocked raw writer")
	}
	q.leaveRaw()
	if !q.sock.raw {
		t.Fatal("socket left raw mode after shutdown")
	}
	q.sock.close()
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	c2, err := net.Dial("tcp", ln.Addr().String())
	must(t, err)
	c1, err := ln.Accept()
	must(t, err)
	return c1, c2
}

// flakyQueues is a uring device whose OpenQueue fails until allowed.
type flakyQueues struct {
	*blockdev.Uring
	allow atomic.Bool
	tries atomic.Int32
}

func (f *flakyQueues) OpenQueue() (blockdev.Queue, error) {
	f.tries.Add(1)
	if !f.allow.Load() {
		return nil, fmt.Errorf("%w: not now", blockdev.ErrNotSupported)
	}
	return f.Uring.OpenQueue()
}

// TestRingModeRetry: a device that cannot open a queue when the host
// starts pipelining (a nexus while a child rebuilds) is asked again later,
// and the queue enters ring mode once it can.
func TestRingModeRetry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	must(t, os.WriteFile(path, nil, 0o600))
	must(t, os.Truncate(path, 16<<20))
	u, err := blockdev.OpenUring(path, blockdev.FileOptions{BlockSize: 4096})
	if err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	defer u.Close()
	dev := &flakyQueues{Uring: u}
	tg := startTarget(t, TargetConfig{})
	tg.ringRetryDelay = 20 * time.Millisecond
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("flaky"), Device: dev, AllowAnyHost: true}))
	d := dial(t, tg, Config{SubNQN: NQNFor("flaky"), IOQueues: 1, QueueSize: 64})
	defer d.Close()
	rwVerify(t, d, 32, 40, (16<<20)/32, 4, 4096)
	if dev.tries.Load() == 0 || tg.ringEnters.Load() != 0 {
		t.Fatalf("%d OpenQueue tries, %d ring entries while refused", dev.tries.Load(), tg.ringEnters.Load())
	}
	dev.allow.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for tg.ringEnters.Load() == 0 && time.Now().Before(deadline) {
		pipelinedReads(t, d, 32, 20)
	}
	if tg.ringEnters.Load() == 0 {
		t.Fatalf("no ring mode after OpenQueue was allowed (%d tries)", dev.tries.Load())
	}
}

// pipelinedReads has workers goroutines read 4 KiB n times each.
func pipelinedReads(t *testing.T, d *Device, workers, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for i := range n {
				if _, err := d.ReadAt(buf, int64((w*n+i)%1024)*4096); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
