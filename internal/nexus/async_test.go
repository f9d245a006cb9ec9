package nexus

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

// asyncChildren makes env.open hand out asyncAdapter children, so the
// fault tests also run through the nexus's asynchronous child path. Set
// only by TestAsyncChildren (nexus tests do not run in parallel).
var asyncChildren bool

// asyncAdapter gives a fault-injecting test device the blockdev.Async
// fast path: each started I/O runs on its own goroutine (tests only), so
// injected errors and hangs reach the nexus through IODone.
type asyncAdapter struct {
	*blockdev.Fault
	started atomic.Int64
}

func (a *asyncAdapter) StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool {
	if len(p) == 0 || blockdev.CheckRange(off, int64(len(p)), a.BlockSize(), a.Size()) != nil {
		return false
	}
	a.started.Add(1)
	go func() {
		var n int
		var err error
		if write {
			n, err = a.WriteAt(p, off)
		} else {
			n, err = a.ReadAt(p, off)
		}
		cb.IODone(n, err)
		cb.IOFlush()
	}()
	return true
}

func (a *asyncAdapter) Submit() {}

// TestAsyncChildren runs the fault-handling tests with children that take
// reads and writes through blockdev.Async.
func TestAsyncChildren(t *testing.T) {
	asyncChildren = true
	defer func() { asyncChildren = false }()
	for name, f := range map[string]func(*testing.T){
		"WriteErrorFaultsChildBeforeAck": TestWriteErrorFaultsChildBeforeAck,
		"ReadErrorRetriesOnOtherChild":   TestReadErrorRetriesOnOtherChild,
		"LastHealthyChildNeverFaulted":   TestLastHealthyChildNeverFaulted,
		"NoHealthyChildFailsCleanly":     TestNoHealthyChildFailsCleanly,
		"HungChildTimesOut":              TestHungChildTimesOut,
		"SlowChildNotFaulted":            TestSlowChildNotFaulted,
		"Conformance":                    TestConformance,
	} {
		t.Run(name, f)
	}
	t.Run("UsesAsync", func(t *testing.T) {
		e := newEnv(t, 4<<20)
		cs := uris(3)
		n := e.newNexus(e.config(cs...))
		for i := range 8 {
			if _, err := n.WriteAt(fill(byte(i), 4096), int64(i)*4096); err != nil {
				t.Fatal(err)
			}
		}
		// Two of the three children's parts run asynchronously (the
		// third runs inline in the caller).
		var started int64
		for _, c := range n.snap.Load().healthy {
			started += c.dev.(*asyncAdapter).started.Load()
		}
		if started != 16 {
			t.Fatalf("%d child writes started asynchronously, want 16", started)
		}
	})
}

// TestConformanceUring runs the conformance suites on a nexus over io_uring
// files (the children take the asynchronous path).
func TestConformanceUring(t *testing.T) {
	for _, k := range []int{1, 3} {
		t.Run(fmt.Sprintf("children=%d", k), func(t *testing.T) {
			blockdevtest.RunWith(t, blockdevtest.Options{ZeroesUnwritten: true, SupportsUnmapZeroes: true},
				func(t *testing.T) blockdev.Device { return uringNexus(t, k) })
		})
	}
}

func uringNexus(t *testing.T, k int) *Nexus {
	dir := t.TempDir()
	var cs []string
	for i := range k {
		path := filepath.Join(dir, fmt.Sprintf("c%d.img", i))
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, blockdevtest.MinSize); err != nil {
			t.Fatal(err)
		}
		d, err := blockdev.OpenUring(path, blockdev.FileOptions{BlockSize: 4096})
		if err != nil {
			t.Skipf("io_uring: %v", err)
		}
		d.Close()
		cs = append(cs, "uring://"+path)
	}
	e := newEnv(t, blockdevtest.MinSize)
	cfg := e.config(cs...)
	cfg.Opener = blockdev.NewRegistry().Open
	n, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUringMirrorIdentical writes through a 3-way nexus over io_uring files
// from many goroutines and checks the children are byte-identical.
func TestUringMirrorIdentical(t *testing.T) {
	n := uringNexus(t, 3)
	defer n.Shutdown(t.Context())
	const workers = 8
	done := make(chan error, workers)
	for w := range workers {
		go func() {
			buf := blockdev.AlignedBuffer(4096)
			for i := range 64 {
				copy(buf, fill(byte(w*64+i), 4096))
				if _, err := n.WriteAt(buf, int64((w*64+i)%512)*4096); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range workers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	var sums [][]byte
	for _, c := range n.snap.Load().healthy {
		b := make([]byte, 2<<20)
		if _, err := c.dev.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, b)
	}
	if len(sums) != 3 || !bytes.Equal(sums[0], sums[1]) || !bytes.Equal(sums[0], sums[2]) {
		t.Fatalf("children differ after concurrent writes (%d healthy)", len(sums))
	}
	for _, c := range n.snap.Load().healthy {
		if c.async == nil {
			t.Fatalf("child %s has no asynchronous path", c.c.uri)
		}
	}
}

// TestNexusAsyncConformance runs the blockdev.Async suite on the nexus
// itself, over io_uring files and over fault-injecting async children.
func TestNexusAsyncConformance(t *testing.T) {
	for _, k := range []int{1, 3} {
		t.Run(fmt.Sprintf("uring/children=%d", k), func(t *testing.T) {
			blockdevtest.RunAsync(t, func(t *testing.T) blockdev.Device { return uringNexus(t, k) })
		})
	}
	t.Run("adapter/children=2", func(t *testing.T) {
		asyncChildren = true
		defer func() { asyncChildren = false }()
		blockdevtest.RunAsync(t, func(t *testing.T) blockdev.Device {
			e := newEnv(t, blockdevtest.MinSize)
			e.bs = 4096
			n, err := New(t.Context(), e.config(uris(2)...))
			if err != nil {
				t.Fatal(err)
			}
			return n
		})
	})
}

// nexusAsync runs one I/O through n.StartQueued and waits for it; it fails
// the test if the nexus declined the asynchronous path.
func nexusAsync(t *testing.T, n *Nexus, write bool, p []byte, off int64) error {
	t.Helper()
	w := &asyncResult{ch: make(chan struct{}, 1)}
	if !n.StartQueued(write, p, off, w) {
		t.Fatalf("nexus declined asynchronous I/O (state %v)", n.State())
	}
	n.Submit()
	select {
	case <-w.ch:
	case <-time.After(20 * time.Second):
		t.Fatal("asynchronous nexus I/O never completed")
	}
	if w.dones.Load() != 1 || w.flushes.Load() != 1 {
		t.Fatalf("IODone %d, IOFlush %d", w.dones.Load(), w.flushes.Load())
	}
	if w.err == nil && w.n != len(p) {
		t.Fatalf("completed %d of %d bytes", w.n, len(p))
	}
	return w.err
}

type asyncResult struct {
	n       int
	err     error
	dones   atomic.Int32
	flushes atomic.Int32
	ch      chan struct{}
}

func (w *asyncResult) IODone(n int, err error) { w.n, w.err = n, err; w.dones.Add(1) }
func (w *asyncResult) IOFlush()                { w.flushes.Add(1); w.ch <- struct{}{} }

// TestNexusAsyncFaults: the asynchronous path follows the same failure
// rules as the synchronous one.
func TestNexusAsyncFaults(t *testing.T) {
	asyncChildren = true
	defer func() { asyncChildren = false }()
	newNx := func(t *testing.T, k int, timeout time.Duration) (*env, []string, *Nexus) {
		e := newEnv(t, 4<<20)
		cs := uris(k)
		cfg := e.config(cs...)
		if timeout > 0 {
			cfg.ChildTimeout = timeout
		}
		return e, cs, e.newNexus(cfg)
	}
	t.Run("WriteErrorFaultsChild", func(t *testing.T) {
		e, cs, n := newNx(t, 3, 0)
		e.fault(cs[1]).Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Count: 1})
		if err := nexusAsync(t, n, true, fill(7, 4096), 8192); err != nil {
			t.Fatalf("write with one failing child: %v", err)
		}
		if st := childState(n, cs[1]); st.State != ChildFaulted {
			t.Fatalf("child 1: %+v", st)
		}
		info, err := e.store.Load(t.Context(), "nx-uuid")
		if err != nil || info.Children[1].Healthy {
			t.Fatalf("info after fault: %+v %v", info, err)
		}
		got := make([]byte, 4096)
		if _, err := n.ReadAt(got, 8192); err != nil || !bytes.Equal(got, fill(7, 4096)) {
			t.Fatalf("read back: %v", err)
		}
	})
	t.Run("ReadErrorRetried", func(t *testing.T) {
		e, cs, n := newNx(t, 2, 0)
		if _, err := n.WriteAt(fill(9, 4096), 0); err != nil {
			t.Fatal(err)
		}
		e.fault(cs[0]).Inject(blockdev.FaultRule{Ops: blockdev.OpRead})
		got := make([]byte, 4096)
		for i := 0; i < 20 && childState(n, cs[0]).State == ChildOpen; i++ {
			clear(got)
			if err := nexusAsync(t, n, false, got, 0); err != nil || !bytes.Equal(got, fill(9, 4096)) {
				t.Fatalf("read: %v", err)
			}
		}
		if st := childState(n, cs[0]); st.State != ChildFaulted {
			t.Fatalf("child 0: %+v", st)
		}
	})
	t.Run("LastHealthyNeverFaulted", func(t *testing.T) {
		e, cs, n := newNx(t, 1, 0)
		e.fault(cs[0]).Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Count: 1})
		if err := nexusAsync(t, n, true, fill(1, 4096), 0); err == nil {
			t.Fatal("write failing on the only child succeeded")
		}
		if st := childState(n, cs[0]); st.State != ChildOpen {
			t.Fatalf("only child: %+v", st)
		}
		if err := nexusAsync(t, n, true, fill(2, 4096), 0); err != nil {
			t.Fatalf("next write: %v", err)
		}
	})
	t.Run("HungChildTimesOut", func(t *testing.T) {
		e, cs, n := newNx(t, 2, 100*time.Millisecond)
		e.fault(cs[1]).Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Hang: true})
		start := time.Now()
		if err := nexusAsync(t, n, true, fill(3, 4096), 0); err != nil {
			t.Fatalf("write with hung child: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("write took %v", d)
		}
		if st := childState(n, cs[1]); st.State != ChildFaulted || !strings.Contains(st.Reason, "timeout") {
			t.Fatalf("hung child: %+v", st)
		}
	})
	t.Run("DeclinesWhileDegraded", func(t *testing.T) {
		_, cs, n := newNx(t, 2, 0)
		if err := n.OfflineChild(t.Context(), cs[1]); err != nil {
			t.Fatal(err)
		}
		w := &asyncResult{ch: make(chan struct{}, 1)}
		if n.StartQueued(true, fill(1, 4096), 0, w) {
			t.Fatal("write started asynchronously while a child keeps a dirty log")
		}
		// Reads still go asynchronously to the healthy child.
		got := make([]byte, 4096)
		if err := nexusAsync(t, n, false, got, 0); err != nil {
			t.Fatal(err)
		}
	})
}

// TestNexusAsyncConcurrentFaults: many asynchronous writers while children
// fail at random; no write is lost on the surviving child.
func TestNexusAsyncConcurrentFaults(t *testing.T) {
	asyncChildren = true
	defer func() { asyncChildren = false }()
	e := newEnv(t, 4<<20)
	cs := uris(3)
	n := e.newNexus(e.config(cs...))
	e.fault(cs[0]).Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Rate: 0.02})
	e.fault(cs[2]).Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Rate: 0.01})
	const workers, per = 8, 64
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range per {
				off := int64(w*per+i) * 4096
				r := &asyncResult{ch: make(chan struct{}, 1)}
				var err error
				if n.StartQueued(true, fill(byte(w*per+i), 4096), off, r) {
					n.Submit()
					<-r.ch
					err = r.err
				} else {
					_, err = n.WriteAt(fill(byte(w*per+i), 4096), off)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, 4096)
	for i := range workers * per {
		if _, err := n.ReadAt(got, int64(i)*4096); err != nil || !bytes.Equal(got, fill(byte(i), 4096)) {
			t.Fatalf("block %d: %v", i, err)
		}
	}
	if st := childState(n, cs[1]); st.State != ChildOpen {
		t.Fatalf("child without faults: %+v", st)
	}
}
