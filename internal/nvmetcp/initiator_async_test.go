package nvmetcp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
	"github.com/kura-io/kura/internal/perf"
)

func TestAsyncConformance(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	n := 0
	for _, bs := range []int{512, 4096} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			blockdevtest.RunAsync(t, func(t *testing.T) blockdev.Device {
				n++
				nqn, _ := addMalloc(t, tg, fmt.Sprintf("async%d", n), 16<<20, bs)
				return dial(t, tg, Config{SubNQN: nqn, IOQueues: 2})
			})
		})
	}
}

// countingCompletion records how often each callback ran.
type countingCompletion struct {
	dones, flushes atomic.Int32
	err            atomic.Value
	flushed        chan struct{}
}

func (c *countingCompletion) IODone(n int, err error) {
	c.dones.Add(1)
	if err != nil {
		c.err.Store(err)
	}
}

func (c *countingCompletion) IOFlush() {
	c.flushes.Add(1)
	c.flushed <- struct{}{}
}

// Commands in flight when the connection dies complete once, with ErrIO;
// the initiator reconnects and asynchronous I/O works again.
func TestAsyncConnectionLoss(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	mem, err := blockdev.NewMalloc("lossy", 1<<20, 512)
	must(t, err)
	fault := blockdev.NewFault(mem)
	nqn := NQNFor("lossy")
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: nqn, Device: fault, AllowAnyHost: true}))
	d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 2, ReconnectTimeout: 10 * time.Second})
	defer d.Close()

	fault.Inject(blockdev.FaultRule{Ops: blockdev.OpRead, Hang: true})
	const n = 8
	cbs := make([]*countingCompletion, n)
	for i := range cbs {
		cbs[i] = &countingCompletion{flushed: make(chan struct{}, 2)}
		if !d.StartQueued(false, make([]byte, 512), int64(i)*512, cbs[i]) {
			t.Fatalf("StartQueued %d refused on a healthy connection", i)
		}
	}
	d.Submit()
	time.Sleep(100 * time.Millisecond)
	d.mu.Lock()
	ioqs := d.ioqs
	d.mu.Unlock()
	for _, q := range ioqs {
		q.conn.Close() // the network drops both I/O connections
	}
	for i, c := range cbs {
		select {
		case <-c.flushed:
		case <-time.After(10 * time.Second):
			t.Fatalf("read %d never completed after the connection died", i)
		}
		e, _ := c.err.Load().(error)
		if !errors.Is(e, blockdev.ErrIO) {
			t.Fatalf("read %d: err %v, want ErrIO", i, e)
		}
	}
	fault.Clear()
	fault.Release()
	time.Sleep(50 * time.Millisecond)
	for i, c := range cbs {
		if c.dones.Load() != 1 || c.flushes.Load() != 1 {
			t.Fatalf("read %d: %d IODone, %d IOFlush", i, c.dones.Load(), c.flushes.Load())
		}
	}
	if _, err := d.ReadAt(make([]byte, 512), 0); err != nil { // waits for the reconnect
		t.Fatalf("read after reconnect: %v", err)
	}
	c := &countingCompletion{flushed: make(chan struct{}, 1)}
	if !d.StartQueued(true, make([]byte, 512), 512, c) {
		t.Fatal("StartQueued refused after the reconnect")
	}
	d.Submit()
	select {
	case <-c.flushed:
	case <-time.After(10 * time.Second):
		t.Fatal("write after reconnect never completed")
	}
	if e, _ := c.err.Load().(error); e != nil {
		t.Fatalf("write after reconnect: %v", e)
	}
}

// kura bench's asynchronous loop over the initiator: every submitter's
// completions start its next I/O on the queues' read loops.
func TestPerfAsyncOverInitiator(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "perfasync", 8<<20, 512)
	d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 2})
	defer d.Close()
	// Under the race detector the submitters stream through their own
	// slices: overlapping I/O on the malloc device would be reported.
	for _, mix := range []int{100, 0, 70} {
		res, err := perf.Run(context.Background(), d, perf.Options{RWMixRead: mix, QueueDepth: 32, Random: !raceEnabled, Duration: 300 * time.Millisecond, Sync: os.Getenv("KURA_PERF_SYNC") != ""})
		if err != nil {
			t.Fatal(err)
		}
		if res.Ops == 0 || res.Errors != 0 {
			t.Fatalf("mix %d: %d ops, %d errors (%v)", mix, res.Ops, res.Errors, res.FirstError)
		}
		t.Logf("mix %d: %s", mix, res)
	}
}
