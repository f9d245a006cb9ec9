package nvmetcp

import (
	"errors"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// TestIOTimeout: a target whose device hangs a read. With an I/O timeout
// the initiator resets the association after about the timeout: the hung
// synchronous read and an asynchronous one fail with ErrTimeout (the
// connection, not the data, is what failed), the device reconnects, and
// I/O elsewhere on the namespace works again. Without one (io_timeout_ms=0)
// the read waits until the device lets it go, and succeeds.
func TestIOTimeout(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	mem, err := blockdev.NewMalloc("stuck", 1<<20, 512)
	must(t, err)
	fault := blockdev.NewFault(mem)
	nqn := NQNFor("stuck")
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: nqn, Device: fault, AllowAnyHost: true}))
	defer fault.Release()

	t.Run("reset", func(t *testing.T) {
		const timeout = 300 * time.Millisecond
		d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 2, IOTimeout: timeout, ReconnectTimeout: 10 * time.Second})
		defer d.Close()
		fault.Inject(blockdev.FaultRule{Ops: blockdev.OpRead, Len: 4096, Hang: true})
		defer fault.Clear()

		async := &countingCompletion{flushed: make(chan struct{}, 2)}
		if !d.StartQueued(false, make([]byte, 512), 512, async) {
			t.Fatal("StartQueued refused on a healthy connection")
		}
		d.Submit()
		start := time.Now()
		_, err := d.ReadAt(make([]byte, 512), 0)
		took := time.Since(start)
		if !errors.Is(err, blockdev.ErrTimeout) || !errors.Is(err, errIOTimeout) {
			t.Fatalf("hung read: err %v, want ErrTimeout", err)
		}
		period, _ := ioTimeoutClock(timeout)
		if took < timeout || took > timeout+2*period+2*time.Second {
			t.Fatalf("hung read failed after %v (timeout %v)", took, timeout)
		}
		select {
		case <-async.flushed:
		case <-time.After(5 * time.Second):
			t.Fatal("hung asynchronous read never completed")
		}
		if e, _ := async.err.Load().(error); !errors.Is(e, blockdev.ErrTimeout) {
			t.Fatalf("hung asynchronous read: err %v, want ErrTimeout", e)
		}
		// Reads outside the hung range work on the new association, and
		// keep working: a healthy queue is not reset.
		for i := 0; i < 5; i++ {
			if _, err := d.ReadAt(make([]byte, 512), 8192); err != nil {
				t.Fatalf("read after the reset: %v", err)
			}
			time.Sleep(2 * period)
		}
		if _, err := d.WriteAt(make([]byte, 512), 8192); err != nil {
			t.Fatalf("write after the reset: %v", err)
		}
	})

	t.Run("disabled", func(t *testing.T) {
		d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 1, IOTimeout: -1})
		defer d.Close()
		fault.Inject(blockdev.FaultRule{Ops: blockdev.OpRead, Len: 4096, Hang: true, Count: 1})
		done := make(chan error, 1)
		go func() {
			_, err := d.ReadAt(make([]byte, 512), 1024)
			done <- err
		}()
		select {
		case err := <-done:
			t.Fatalf("read returned while the device held it: %v", err)
		case <-time.After(700 * time.Millisecond):
		}
		fault.Release()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("released read: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("released read never completed")
		}
	})
}

func TestIOTimeoutClock(t *testing.T) {
	for _, c := range []struct {
		timeout time.Duration
		period  time.Duration
		steps   uint32
	}{
		{-1, 0, 0},
		{30 * time.Second, time.Second, 30},
		{4 * time.Second, 500 * time.Millisecond, 8},
		{300 * time.Millisecond, 37500 * time.Microsecond, 8},
		{10 * time.Millisecond, 5 * time.Millisecond, 2},
	} {
		p, s := ioTimeoutClock(c.timeout)
		if p != c.period || s != c.steps {
			t.Errorf("ioTimeoutClock(%v) = %v, %d; want %v, %d", c.timeout, p, s, c.period, c.steps)
		}
	}
}
