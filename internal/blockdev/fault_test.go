package blockdev_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

func newFaultMalloc(t testing.TB) *blockdev.Fault {
	t.Helper()
	m, err := blockdev.NewMalloc("f", testDevSize, 512)
	if err != nil {
		t.Fatal(err)
	}
	f := blockdev.NewFault(m)
	t.Cleanup(func() { f.Close() })
	return f
}

func TestConformanceFault(t *testing.T) {
	blockdevtest.RunWith(t, fileOpts, func(t *testing.T) blockdev.Device { return newFaultMalloc(t) })
}

func TestFaultRange(t *testing.T) {
	f := newFaultMalloc(t)
	f.Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Off: 4096, Len: 4096})
	p := make([]byte, 512)
	if _, err := f.WriteAt(p, 0); err != nil {
		t.Fatalf("write outside range: %v", err)
	}
	if _, err := f.WriteAt(p, 4096+512); !errors.Is(err, blockdev.ErrIO) {
		t.Fatalf("write inside range: %v, want ErrIO", err)
	}
	if _, err := f.WriteAt(make([]byte, 8192), 0); !errors.Is(err, blockdev.ErrIO) {
		t.Fatalf("overlapping write: %v, want ErrIO", err)
	}
	if _, err := f.ReadAt(p, 4096); err != nil {
		t.Fatalf("read not matched by write rule: %v", err)
	}
	if err := f.Flush(); err != nil {
		t.Fatalf("flush not matched by ranged rule: %v", err)
	}
	if got := f.Stats(blockdev.OpWrite).Errors; got != 2 {
		t.Fatalf("write errors = %d, want 2", got)
	}
	if got := f.Stats(blockdev.OpAll &^ blockdev.OpWrite).Errors; got != 0 {
		t.Fatalf("other errors = %d, want 0", got)
	}
	f.Clear()
	if _, err := f.WriteAt(p, 4096); err != nil {
		t.Fatalf("after Clear: %v", err)
	}
}

func TestFaultCustomErrCountRemove(t *testing.T) {
	f := newFaultMalloc(t)
	errBoom := errors.New("boom")
	f.Inject(blockdev.FaultRule{Ops: blockdev.OpFlush | blockdev.OpUnmap, Err: errBoom, Count: 2})
	if err := f.Flush(); !errors.Is(err, errBoom) {
		t.Fatalf("flush 1: %v", err)
	}
	if err := f.Unmap(0, 512); !errors.Is(err, errBoom) {
		t.Fatalf("unmap: %v", err)
	}
	if err := f.Flush(); err != nil {
		t.Fatalf("rule should have expired: %v", err)
	}
	id := f.Inject(blockdev.FaultRule{Ops: blockdev.OpWriteZeroes})
	if err := f.WriteZeroes(0, 512); !errors.Is(err, blockdev.ErrIO) {
		t.Fatalf("write zeroes: %v", err)
	}
	f.Remove(id)
	if err := f.WriteZeroes(0, 512); err != nil {
		t.Fatalf("after Remove: %v", err)
	}
}

func TestFaultRateSeeded(t *testing.T) {
	count := func() int64 {
		f := newFaultMalloc(t)
		f.Seed(42)
		f.Inject(blockdev.FaultRule{Ops: blockdev.OpRead, Rate: 0.25})
		p := make([]byte, 512)
		for range 1000 {
			f.ReadAt(p, 0)
		}
		return f.Stats(blockdev.OpRead).Errors
	}
	a, b := count(), count()
	if a != b {
		t.Fatalf("same seed gave %d and %d failures", a, b)
	}
	if a < 150 || a > 350 {
		t.Fatalf("rate 0.25 gave %d/1000 failures", a)
	}
}

func TestFaultDelay(t *testing.T) {
	f := newFaultMalloc(t)
	f.Inject(blockdev.FaultRule{Ops: blockdev.OpRead, Delay: 30 * time.Millisecond})
	start := time.Now()
	if _, err := f.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("read took %v, want >= 30ms", d)
	}
	if s := f.Stats(blockdev.OpRead); s.Delayed != 1 || s.Errors != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// waitHung waits until n calls have been hung.
func waitHung(t *testing.T, f *blockdev.Fault, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.Stats(blockdev.OpAll).Hung < n {
		if time.Now().After(deadline) {
			t.Fatal("calls did not hang")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFaultHangRelease(t *testing.T) {
	f := newFaultMalloc(t)
	id := f.Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Hang: true})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i := range 2 {
		wg.Go(func() {
			_, err := f.WriteAt(make([]byte, 512), int64(i)*512)
			errs <- err
		})
	}
	waitHung(t, f, 2)
	select {
	case err := <-errs:
		t.Fatalf("hung write returned early: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	f.Remove(id)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("released write: %v", err)
		}
	}
}

func TestFaultHangThenFailAndClose(t *testing.T) {
	f := newFaultMalloc(t)
	f.Inject(blockdev.FaultRule{Ops: blockdev.OpRead, Hang: true, Err: blockdev.ErrTimeout})
	done := make(chan error, 1)
	go func() { _, err := f.ReadAt(make([]byte, 512), 0); done <- err }()
	waitHung(t, f, 1)
	f.Release()
	if err := <-done; !errors.Is(err, blockdev.ErrTimeout) {
		t.Fatalf("hang+err: %v, want ErrTimeout", err)
	}
	go func() { _, err := f.ReadAt(make([]byte, 512), 0); done <- err }()
	waitHung(t, f, 2)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("hung call after Close: %v, want ErrClosed", err)
	}
}
