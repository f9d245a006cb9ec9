package nexus

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/testtool"
)

// blockData is the content of block b at version v.
func blockData(buf []byte, b int64, v uint32) {
	for i := 0; i+16 <= len(buf); i += 16 {
		binary.LittleEndian.PutUint64(buf[i:], uint64(b))
		binary.LittleEndian.PutUint32(buf[i+8:], v)
		binary.LittleEndian.PutUint32(buf[i+12:], uint32(i))
	}
}

// TestSoakInjectedFaults runs verifying writers/readers while children
// fail in every way the fault wrapper can make them fail (errors on
// write/read/flush, hangs, latency beyond the timeout, admin fault and
// offline, failures of a child under rebuild), then come back through
// (partial) rebuild. It requires zero verify errors, zero failed client
// I/Os and a healthy child at all times, with inline and with isolated
// child I/O dispatch: 12 faults each, KURA_LONG=1: 120 each.
func TestSoakInjectedFaults(t *testing.T) {
	for _, mode := range []string{"inline", "isolated", "async"} {
		t.Run(mode, func(t *testing.T) { soak(t, mode) })
	}
}

// soak runs the fault soak. Modes: "inline" and "isolated" child dispatch
// through ReadAt/WriteAt; "async": children with the blockdev.Async path
// and a client that starts its I/O through Nexus.StartQueued whenever the
// nexus accepts it (otherwise ReadAt/WriteAt), so faults, timeouts,
// rebuilds and dirty logs hit the asynchronous paths too.
func soak(t *testing.T, mode string) {
	isolate, async := mode == "isolated", mode == "async"
	if async {
		asyncChildren = true
		defer func() { asyncChildren = false }()
	}
	faults := 12 // per dispatch mode
	if testtool.Long() {
		faults = 120
	}
	const bs = 4096
	e := newEnv(t, 4<<20)
	e.bs = bs
	cs := uris(3)
	cfg := e.config(cs...)
	cfg.ChildTimeout = 2 * time.Second // generous: the test machine is shared and very busy
	cfg.IsolateChildIO = isolate
	cfg.WriteIntent = mode == "inline" // exercise intent rotation under faults too (the async path declines writes with it)
	cfg.IntentInterval = 50 * time.Millisecond
	n := e.newNexus(cfg)
	nblk := n.Size() / bs

	var (
		ioErrs, verifyErrs, ops atomic.Int64
		asyncOps                atomic.Int64 // I/Os the nexus took through StartQueued
		stop                    = make(chan struct{})
		wg                      sync.WaitGroup
		model                   = make([]uint32, nblk) // block -> version; block b owned by worker b%G
	)
	const G = 4
	t.Cleanup(func() { // runs before the nexus shutdown registered earlier
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})
	for g := range G {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			buf, want := make([]byte, bs), make([]byte, bs)
			w := &asyncResult{ch: make(chan struct{}, 1)}
			do := func(write bool, off int64) error {
				if async {
					w.dones.Store(0)
					w.flushes.Store(0)
					if n.StartQueued(write, buf, off, w) {
						asyncOps.Add(1)
						n.Submit()
						<-w.ch
						return w.err
					}
				}
				var err error
				if write {
					_, err = n.WriteAt(buf, off)
				} else {
					_, err = n.ReadAt(buf, off)
				}
				return err
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				b := r.Int64N(nblk/G)*G + int64(g)
				switch op := r.IntN(10); {
				case op < 5:
					v := model[b] + 1
					blockData(buf, b, v)
					if err := do(true, b*bs); err != nil {
						ioErrs.Add(1)
						t.Errorf("write block %d: %v", b, err)
						continue
					}
					model[b] = v
				case op < 9:
					if err := do(false, b*bs); err != nil {
						ioErrs.Add(1)
						t.Errorf("read block %d: %v", b, err)
						continue
					}
					if model[b] == 0 {
						clear(want)
					} else {
						blockData(want, b, model[b])
					}
					if !bytes.Equal(buf, want) {
						verifyErrs.Add(1)
						t.Errorf("verify block %d (version %d) failed", b, model[b])
					}
				default:
					if err := n.Flush(); err != nil {
						ioErrs.Add(1)
						t.Errorf("flush: %v", err)
					}
				}
				ops.Add(1)
			}
		})
	}

	healthyCheck := func() {
		k := 0
		for _, c := range n.Children() {
			if c.State == ChildOpen {
				k++
			}
		}
		if k == 0 {
			t.Fatalf("no healthy child: %+v", n.Children())
		}
	}
	var onlineAndWait func(uri string, hitRebuild bool)
	onlineAndWait = func(uri string, hitRebuild bool) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := n.OnlineChild(t.Context(), uri)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrChildBusy) || time.Now().After(deadline) {
				t.Fatalf("online %s: %v", uri, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if hitRebuild && childState(n, uri).State == ChildRebuilding {
			f := e.fault(uri)
			id := f.Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Count: 1})
			time.Sleep(20 * time.Millisecond)
			f.Remove(id) // if it did not fire, it must not fire later
			if f.Stats(blockdev.OpWrite).Errors > 0 {
				// It fired: the child faults (maybe a moment later).
				waitState(t, n, uri, ChildFaulted, 5*time.Second)

				onlineAndWait(uri, false)
				return
			}
		}
		waitState(t, n, uri, ChildOpen, 20*time.Second)
	}

	r := rand.New(rand.NewPCG(42, 42))
	injected, spurious := 0, 0
	for injected < faults {
		healthyCheck()
		uri := cs[r.IntN(len(cs))]
		f := e.fault(uri)
		var rule blockdev.FaultRule
		kind := r.IntN(8)
		switch kind {
		case 0:
			rule = blockdev.FaultRule{Ops: blockdev.OpWrite, Count: 1}
		case 1:
			rule = blockdev.FaultRule{Ops: blockdev.OpRead, Count: 1}
		case 2:
			rule = blockdev.FaultRule{Ops: blockdev.OpFlush, Count: 1}
		case 3:
			rule = blockdev.FaultRule{Ops: blockdev.OpWrite, Count: 1, Hang: true}
		case 4:
			rule = blockdev.FaultRule{Ops: blockdev.OpRead, Count: 1, Hang: true}
		case 5:
			rule = blockdev.FaultRule{Ops: blockdev.OpAll, Count: 1, Delay: 3 * time.Second}
		case 6:
			if err := n.OfflineChild(t.Context(), uri); err != nil {
				t.Fatal(err)
			}
		case 7:
			if err := n.FaultChild(t.Context(), uri, "soak"); err != nil {
				t.Fatal(err)
			}
		}
		if kind < 6 {
			id := f.Inject(rule)
			deadline := time.Now().Add(6 * time.Second)
			for childState(n, uri).State == ChildOpen && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			f.Remove(id)
			if childState(n, uri).State == ChildOpen {
				continue // the rule never fired (e.g. reads went elsewhere)
			}
		}
		injected++
		healthyCheck()
		onlineAndWait(uri, r.IntN(4) == 0)
		// A loaded test machine can time out a child we did not touch
		// (spurious faults): heal everything before the next round.
		for _, c := range n.Children() {
			if c.State != ChildOpen && c.URI != uri {
				spurious++
				t.Logf("spurious fault: %+v", c)
			}
			if c.State == ChildFaulted || c.State == ChildOffline {
				onlineAndWait(c.URI, false)
			} else if c.State == ChildRebuilding {
				waitState(t, n, c.URI, ChildOpen, 20*time.Second)
			}
		}
	}
	close(stop)
	wg.Wait()
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	// Full verify through the nexus, and the mirrors are identical.
	buf, want := make([]byte, bs), make([]byte, bs)
	for b := range nblk {
		if _, err := n.ReadAt(buf, b*bs); err != nil {
			t.Fatal(err)
		}
		clear(want)
		if model[b] != 0 {
			blockData(want, b, model[b])
		}
		if !bytes.Equal(buf, want) {
			verifyErrs.Add(1)
		}
	}
	sum := e.sum(cs[0], n.Size())
	for _, c := range cs[1:] {
		if e.sum(c, n.Size()) != sum {
			t.Errorf("child %s differs", c)
		}
	}
	info, _ := e.store.Load(context.Background(), "nx-uuid")
	for _, c := range info.Children {
		if !c.Healthy {
			t.Errorf("info: %+v", info)
		}
	}
	t.Logf("%d faults (+%d spurious), %d client ops (%d through StartQueued), %d rebuilds, %d I/O errors, %d verify errors",
		injected, spurious, ops.Load(), asyncOps.Load(), len(n.RebuildHistory()), ioErrs.Load(), verifyErrs.Load())
	if async && asyncOps.Load() == 0 {
		t.Error("async mode: no client I/O went through Nexus.StartQueued")
	}
	if ioErrs.Load() != 0 || verifyErrs.Load() != 0 {
		t.Fatal("errors")
	}
}
