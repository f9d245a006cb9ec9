package nvmetcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// fakeAsync is a malloc device with a blockdev.Async path that checks how
// the target uses it: started operations wait until Submit (a target that
// forgets to submit hangs), every refuseEvery-th start is refused (the
// target must fall back), a batch completes in reverse order on the
// device's own goroutine, and operations touching [badOff, badEnd) fail
// (reads with a media error, writes with ErrNoSpace). hold, when set,
// delays completions until it is closed.
type fakeAsync struct {
	blockdev.Device
	refuseEvery    int64
	panicAt        atomic.Int64 // StartQueued call number that panics (0: none)
	badOff, badEnd int64
	hold           chan struct{}

	mu        sync.Mutex // guards queued
	queued    []fakeOp
	sub       chan []fakeOp // submitted batches, to the device goroutine
	stop      chan struct{}
	end       chan struct{}
	started   atomic.Int64
	refused   atomic.Int64
	inflight  atomic.Int64 // started and not yet completed
	asyncErrs atomic.Int64 // errors reported through IODone
	closeOnce sync.Once
}

type fakeOp struct {
	write bool
	p     []byte
	off   int64
	cb    blockdev.IOCompletion
}

func newFakeAsync(t testing.TB, size int64, bs int) *fakeAsync {
	m, err := blockdev.NewMalloc("fake", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAsync{Device: m, badOff: -1, badEnd: -1, sub: make(chan []fakeOp, 1024),
		stop: make(chan struct{}), end: make(chan struct{})}
	go f.run()
	t.Cleanup(func() { f.Close() }) // after the target's cleanup (registered later)
	return f
}

// ioErr returns the injected error for an operation, or nil.
func (f *fakeAsync) ioErr(write bool, off int64, n int) error {
	switch {
	case off >= f.badEnd || off+int64(n) <= f.badOff:
		return nil
	case write:
		return fmt.Errorf("fake: %w", blockdev.ErrNoSpace)
	default:
		return errors.New("fake: media error")
	}
}

func (f *fakeAsync) ReadAt(p []byte, off int64) (int, error) {
	if err := f.ioErr(false, off, len(p)); err != nil {
		return 0, err
	}
	return f.Device.ReadAt(p, off)
}

func (f *fakeAsync) WriteAt(p []byte, off int64) (int, error) {
	if err := f.ioErr(true, off, len(p)); err != nil {
		return 0, err
	}
	return f.Device.WriteAt(p, off)
}

func (f *fakeAsync) StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool {
	n := f.started.Add(1)
	if n == f.panicAt.Load() {
		panic("fake: StartQueued bug")
	}
	if f.refuseEvery > 0 && n%f.refuseEvery == 0 {
		f.refused.Add(1)
		return false
	}
	f.inflight.Add(1)
	f.mu.Lock()
	f.queued = append(f.queued, fakeOp{write, p, off, cb})
	f.mu.Unlock()
	return true
}

func (f *fakeAsync) Submit() {
	f.mu.Lock()
	q := f.queued
	f.queued = nil
	f.mu.Unlock()
	if len(q) > 0 {
		f.sub <- q
	}
}

// run is the device's completion goroutine: it gathers the submitted
// batches, reports them in reverse order (all IODone, then all IOFlush).
func (f *fakeAsync) run() {
	defer close(f.end)
	for {
		var batch []fakeOp
		select {
		case batch = <-f.sub:
		case <-f.stop:
			return
		}
	more:
		for {
			select {
			case b := <-f.sub:
				batch = append(batch, b...)
			default:
				break more
			}
		}
		if f.hold != nil {
			<-f.hold
		}
		for i := len(batch) - 1; i >= 0; i-- {
			op := batch[i]
			var err error
			if op.write {
				_, err = f.WriteAt(op.p, op.off)
			} else {
				_, err = f.ReadAt(op.p, op.off)
			}
			n := len(op.p)
			if err != nil {
				n = 0
				f.asyncErrs.Add(1)
			}
			f.inflight.Add(-1)
			op.cb.IODone(n, err)
		}
		for _, op := range batch {
			op.cb.IOFlush()
		}
	}
}

func (f *fakeAsync) Close() error {
	err := blockdev.ErrClosed
	f.closeOnce.Do(func() {
		close(f.stop)
		<-f.end
		err = f.Device.Close()
	})
	return err
}

// rwVerify runs workers goroutines doing random-sized writes and then reads
// with verification in per-worker regions of dev (so the final content is
// known), rounds times each.
func rwVerify(t *testing.T, d *Device, workers, rounds int, region int64, maxBlocks int, bs int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			base := int64(w) * region
			shadow := make([]byte, region)
			wbuf := make([]byte, maxBlocks*bs)
			rbuf := make([]byte, maxBlocks*bs)
			for i := 0; i < rounds; i++ {
				n := (1 + rng.IntN(maxBlocks)) * bs
				off := int64(rng.IntN(int(region)/bs-n/bs+1)) * int64(bs)
				p := wbuf[:n]
				for j := range p {
					p[j] = byte(rng.Uint32())
				}
				if _, err := d.WriteAt(p, base+off); err != nil {
					errs <- fmt.Errorf("worker %d write %d@%d: %w", w, n, off, err)
					return
				}
				copy(shadow[off:], p)
				n = (1 + rng.IntN(maxBlocks)) * bs
				off = int64(rng.IntN(int(region)/bs-n/bs+1)) * int64(bs)
				if _, err := d.ReadAt(rbuf[:n], base+off); err != nil {
					errs <- fmt.Errorf("worker %d read %d@%d: %w", w, n, off, err)
					return
				}
				if !bytes.Equal(rbuf[:n], shadow[off:off+int64(n)]) {
					errs <- fmt.Errorf("worker %d: read %d@%d returned wrong data", w, n, off)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// countingUring counts the operations the target started asynchronously.
type countingUring struct {
	*blockdev.Uring
	n atomic.Int64
}

func (c *countingUring) StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool {
	ok := c.Uring.StartQueued(write, p, off, cb)
	if ok {
		c.n.Add(1)
	}
	return ok
}

// TestAsyncUringVerify: QD32 random writes and verified reads over four I/O
// queues against a uring:// file device go through the asynchronous path.
func TestAsyncUringVerify(t *testing.T) {
	const size = 32 << 20
	path := filepath.Join(t.TempDir(), "disk.img")
	must(t, os.WriteFile(path, nil, 0o600))
	must(t, os.Truncate(path, size))
	dev, err := blockdev.NewRegistry().Open(context.Background(), "uring://"+path+"?blk_size=4096")
	if err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	u, ok := dev.(*blockdev.Uring)
	if !ok {
		t.Fatalf("uring:// opened %T", dev)
	}
	cu := &countingUring{Uring: u}
	tg := startTarget(t, TargetConfig{})
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("uring"), Device: cu, AllowAnyHost: true}))
	d := dial(t, tg, Config{SubNQN: NQNFor("uring"), IOQueues: 4, QueueSize: 64})
	rounds := 150
	if raceEnabled {
		rounds = 40
	}
	rwVerify(t, d, 32, rounds, size/32, 16, 4096)
	must(t, d.Close())
	must(t, tg.RemoveSubsystem(NQNFor("uring")))
	must(t, dev.Close())
	if cu.n.Load() == 0 {
		t.Fatal("no I/O went through StartQueued")
	}
	t.Logf("%d operations started asynchronously", cu.n.Load())
}

// TestAsyncFakeDevice: out-of-order completions, refused starts (the
// synchronous fallback) and both SQ flow control modes keep data intact,
// with 512-byte blocks and writes large enough to need R2T.
func TestAsyncFakeDevice(t *testing.T) {
	for _, sqflow := range []bool{false, true} {
		t.Run(fmt.Sprintf("sqflow=%v", sqflow), func(t *testing.T) {
			const size = 16 << 20
			f := newFakeAsync(t, size, 512)
			f.refuseEvery = 7
			tg := startTarget(t, TargetConfig{})
			must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("fake"), Device: f, AllowAnyHost: true}))
			d := dial(t, tg, Config{SubNQN: NQNFor("fake"), IOQueues: 3, QueueSize: 64, SQFlowControl: sqflow})
			defer d.Close()
			rwVerify(t, d, 32, 60, size/32, 64, 512)
			if f.started.Load() == 0 || f.refused.Load() == 0 {
				t.Fatalf("started %d, refused %d: async path not exercised", f.started.Load(), f.refused.Load())
			}
		})
	}
}

// TestAsyncStartPanic: a device that panics in StartQueued does not take
// the engine down; the queue goes on with synchronous I/O and the data
// stays right.
func TestAsyncStartPanic(t *testing.T) {
	const size = 4 << 20
	f := newFakeAsync(t, size, 512)
	f.panicAt.Store(5)
	tg := startTarget(t, TargetConfig{})
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("panicky"), Device: f, AllowAnyHost: true}))
	d := dial(t, tg, Config{SubNQN: NQNFor("panicky"), IOQueues: 1})
	defer d.Close()
	rwVerify(t, d, 8, 40, size/8, 16, 512)
	if n := f.started.Load(); n != 5 {
		t.Fatalf("StartQueued called %d times, want 5 (the 5th panics, then the queue stays synchronous)", n)
	}
}

// TestAsyncErrorStatus: device errors reported through IODone map to the
// same NVMe status as on the synchronous path.
func TestAsyncErrorStatus(t *testing.T) {
	f := newFakeAsync(t, 4<<20, 512)
	f.badOff, f.badEnd = 1<<20, 1<<20+4096
	tg := startTarget(t, TargetConfig{})
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("bad"), Device: f, AllowAnyHost: true}))
	d := dial(t, tg, Config{SubNQN: NQNFor("bad"), IOQueues: 1})
	defer d.Close()
	// A command runs inline (synchronously) when it is alone in flight, so
	// several clients send at once until errors have gone through the
	// async path; every status is checked on the way.
	want := map[bool]nvme.Status{false: nvme.StatusUnrecoveredRead, true: nvme.StatusCapExceeded | nvme.StatusDNR}
	deadline := time.Now().Add(20 * time.Second)
	var checked atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			p := make([]byte, 4096)
			for i := 0; ; i++ {
				if checked.Load() >= 100 && f.asyncErrs.Load() > 0 || time.Now().After(deadline) {
					return
				}
				write := i%2 == 1
				var err error
				if write {
					_, err = d.WriteAt(p, 1<<20)
				} else {
					_, err = d.ReadAt(p, 1<<20)
				}
				var st nvme.Status
				if !errors.As(err, &st) || st != want[write] {
					errc <- fmt.Errorf("write=%v: got %v, want status %v", write, err, want[write])
					return
				}
				checked.Add(1)
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if f.asyncErrs.Load() == 0 {
		t.Fatalf("no error went through the async path in %d commands", checked.Load())
	}
}

// TestAsyncTeardownInFlight: a host that disconnects while the device
// holds its I/O must not get its queue torn down (slots and buffers freed)
// before the device has reported every operation; after that, nothing
// leaks.
func TestAsyncTeardownInFlight(t *testing.T) {
	before := runtime.NumGoroutine()
	f := newFakeAsync(t, 16<<20, 512)
	f.hold = make(chan struct{})
	tg, err := NewTarget(TargetConfig{ListenAddr: "127.0.0.1:0", Logger: quietLogger()})
	must(t, err)
	must(t, tg.Start(context.Background()))
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("td"), Device: f, AllowAnyHost: true}))
	d := dial(t, tg, Config{SubNQN: NQNFor("td"), IOQueues: 2, ReconnectTimeout: 100 * time.Millisecond})
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Go(func() {
			p := make([]byte, 8192)
			if w%2 == 0 {
				d.WriteAt(p, int64(w)*8192)
			} else {
				d.ReadAt(p, int64(w)*8192)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.inflight.Load() < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d operations reached the device", f.inflight.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.Close()
	wg.Wait()
	time.Sleep(50 * time.Millisecond)
	tg.mu.Lock()
	live := len(tg.conns)
	tg.mu.Unlock()
	close(f.hold)
	if live == 0 {
		t.Fatal("queues were torn down with device I/O in flight")
	}
	must(t, tg.Close())
	if n := f.inflight.Load(); n != 0 {
		t.Fatalf("%d operations still in flight after Target.Close", n)
	}
	must(t, f.Close())
	deadline = time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAsyncQueueBufferLimit: with a tiny buffer budget, commands deferred
// for buffers are started by whoever releases one (here mostly the
// completer), next to asynchronous I/O, and all data stays intact.
func TestAsyncQueueBufferLimit(t *testing.T) {
	const size = 16 << 20
	f := newFakeAsync(t, size, 4096)
	tg := startTarget(t, TargetConfig{QueueBufferLimit: 256 << 10})
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("abudget"), Device: f, AllowAnyHost: true}))
	d := dial(t, tg, Config{SubNQN: NQNFor("abudget"), IOQueues: 1})
	defer d.Close()
	rwVerify(t, d, 16, 15, size/16, 48, 4096)
	if f.started.Load() == 0 {
		t.Fatal("async path not exercised")
	}
}

// BenchmarkAsyncRead4kQD32: 4 KiB reads at QD32 (16 goroutines × 2
// queues) against a uring:// file, through the asynchronous path; the
// report includes allocations per I/O (target and initiator together).
func BenchmarkAsyncRead4kQD32(b *testing.B) {
	const size = 64 << 20
	path := filepath.Join(b.TempDir(), "disk.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		b.Fatal(err)
	}
	u, err := blockdev.OpenUring(path, blockdev.FileOptions{BlockSize: 4096})
	if err != nil {
		b.Skipf("io_uring unavailable: %v", err)
	}
	b.Cleanup(func() { u.Close() })
	tg := startTarget(b, TargetConfig{})
	if err := tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("abench"), Device: u, AllowAnyHost: true}); err != nil {
		b.Fatal(err)
	}
	d := dial(b, tg, Config{SubNQN: NQNFor("abench"), IOQueues: 2})
	b.Cleanup(func() { d.Close() })
	b.ReportAllocs()
	b.SetBytes(4096)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p := make([]byte, 4096)
		i := 0
		for pb.Next() {
			if _, err := d.ReadAt(p, int64(i*7919%(size/4096))*4096); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
