package nexus

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/rebuild"
)

// writeLoad runs k writers of random 4 KiB blocks until stop is closed.
// Writer g owns the blocks b with b%k == g: concurrent overlapping writes
// are unordered by contract, so mirrors could legitimately differ.
func writeLoad(t *testing.T, n *Nexus, k int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for g := range k {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			buf := make([]byte, 4096)
			nblk := n.Size() / 4096
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range buf {
					buf[i] = byte(r.Uint32())
				}
				if _, err := n.WriteAt(buf, (r.Int64N(nblk/int64(k))*int64(k)+int64(g))*4096); err != nil {
					t.Errorf("write during rebuild: %v", err)
					return
				}
			}
		})
	}
	return &wg
}

func lastRecord(t *testing.T, n *Nexus) rebuild.Record {
	t.Helper()
	h := n.RebuildHistory()
	if len(h) == 0 {
		t.Fatal("no rebuild history")
	}
	return h[len(h)-1]
}

func TestRebuildUnderConcurrentWrites(t *testing.T) {
	for _, partial := range []bool{false, true} {
		name := "full"
		if partial {
			name = "partial"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 8<<20)
			cs := uris(3)
			cfg := e.config(cs[:2]...)
			cfg.RebuildRate = 16 << 20 // ~0.5 s for 8 MiB: writes interleave with the copy
			n := e.newNexus(cfg)
			stop := make(chan struct{})
			wg := writeLoad(t, n, 4, stop)
			time.Sleep(50 * time.Millisecond)
			target := cs[2]
			if partial {
				target = cs[1]
				if err := n.OfflineChild(t.Context(), target); err != nil {
					t.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond) // dirty a good part of the device
				if err := n.OnlineChild(t.Context(), target); err != nil {
					t.Fatal(err)
				}
			} else if err := n.AddChild(t.Context(), target); err != nil {
				t.Fatal(err)
			}
			waitState(t, n, target, ChildOpen, 20*time.Second)
			time.Sleep(20 * time.Millisecond) // writes after the rebuild too
			close(stop)
			wg.Wait()
			if err := n.Flush(); err != nil {
				t.Fatal(err)
			}
			want := e.sum(cs[0], n.Size())
			for _, c := range n.Children() {
				if e.sum(c.URI, n.Size()) != want {
					t.Fatalf("child %s differs from %s after rebuild", c.URI, cs[0])
				}
			}
			rec := lastRecord(t, n)
			if rec.State != rebuild.Completed || (partial && rec.Kind != rebuild.Partial) {
				t.Fatalf("record %+v", rec)
			}
		})
	}
}

func TestPartialRebuildCopiesOnlyDirty(t *testing.T) {
	for _, restart := range []string{"none", "clean", "crash"} {
		t.Run(restart, func(t *testing.T) {
			e := newEnv(t, 8<<20)
			cs := uris(2)
			cfg := e.config(cs...)
			n := e.newNexus(cfg)
			for i := range int64(64) { // fill every segment
				n.WriteAt(fill(1, 128<<10), i*128<<10)
			}
			if err := n.OfflineChild(t.Context(), cs[1]); err != nil {
				t.Fatal(err)
			}
			seg := cfg.SegmentSize
			dirty := []int64{0, 3, 4, 70, 127}
			for _, s := range dirty {
				n.WriteAt(fill(2, 4096), s*seg+8192)
			}
			n.WriteAt(fill(3, 4096), 3*seg) // same segment again
			switch restart {
			case "clean":
				if err := n.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
				n = e.newNexus(cfg)
			case "crash":
				n.crash()
				n = e.newNexus(cfg)
			}
			if st := childState(n, cs[1]); st.State == ChildOpen || st.DirtySegments != int64(len(dirty)) {
				t.Fatalf("after restart %s: %+v", restart, st)
			}
			if err := n.OnlineChild(t.Context(), cs[1]); err != nil {
				t.Fatal(err)
			}
			waitState(t, n, cs[1], ChildOpen, 5*time.Second)
			rec := lastRecord(t, n)
			if rec.Kind != rebuild.Partial || rec.Stats.BytesCopied != int64(len(dirty))*seg || rec.Stats.SegmentsCopied != int64(len(dirty)) {
				t.Fatalf("record %+v", rec)
			}
			if e.sum(cs[0], n.Size()) != e.sum(cs[1], n.Size()) {
				t.Fatal("children differ")
			}
			// The log is gone once the child is healthy again.
			if st := childState(n, cs[1]); st.DirtySegments != 0 {
				t.Fatalf("log kept: %+v", st)
			}
		})
	}
}

func TestRebuildRateLimit(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	cfg := e.config(cs[0])
	const rate = 8 << 20
	cfg.RebuildRate = rate
	n := e.newNexus(cfg)
	if err := n.AddChild(t.Context(), cs[1]); err != nil {
		t.Fatal(err)
	}
	waitState(t, n, cs[1], ChildOpen, 10*time.Second)
	st := lastRecord(t, n).Stats
	// 4 MiB at 8 MiB/s with a 0.8 MiB burst: at least ~0.4 s.
	if st.Duration < 350*time.Millisecond || st.RateBps > 1.3*rate {
		t.Fatalf("rate limit not honored: %v, %.0f B/s", st.Duration, st.RateBps)
	}
}

func TestRebuildControl(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	cfg := e.config(cs[0])
	cfg.RebuildRate = 2 << 20 // slow enough to control
	n := e.newNexus(cfg)
	if err := n.RebuildPause(cs[0]); !errors.Is(err, ErrNoRebuild) {
		t.Fatal(err)
	}
	if err := n.AddChild(t.Context(), cs[1]); err != nil {
		t.Fatal(err)
	}
	if st := childState(n, cs[1]); st.State != ChildRebuilding {
		t.Fatalf("%+v", st)
	}
	if err := n.RebuildPause(cs[1]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	st, err := n.RebuildStats(cs[1])
	if err != nil || st.State != rebuild.Paused {
		t.Fatalf("stats %+v %v", st, err)
	}
	done := st.BytesDone
	time.Sleep(100 * time.Millisecond)
	if st2, _ := n.RebuildStats(cs[1]); st2.BytesDone != done {
		t.Fatal("paused rebuild progressed")
	}
	if err := n.RebuildResume(cs[1]); err != nil {
		t.Fatal(err)
	}
	if err := n.RebuildStop(cs[1]); err != nil {
		t.Fatal(err)
	}
	waitState(t, n, cs[1], ChildFaulted, 5*time.Second)
	if rec := lastRecord(t, n); rec.State != rebuild.Stopped {
		t.Fatalf("record %+v", rec)
	}
	// Rebuild again, unthrottled, to completion.
	n.SetRebuildRate(0)
	if err := n.OnlineChild(t.Context(), cs[1]); err != nil {
		t.Fatal(err)
	}
	waitState(t, n, cs[1], ChildOpen, 5*time.Second)
	if rec := lastRecord(t, n); rec.State != rebuild.Completed || rec.Kind != rebuild.Full {
		t.Fatalf("record %+v", rec)
	}
}

// TestCrashDuringPartialRebuild: writes made while a partial rebuild runs
// are logged too (write intent), so a crash mid-rebuild cannot leave an
// unlogged segment that differs between source and destination.
func TestCrashDuringPartialRebuild(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	cfg := e.config(cs...)
	cfg.RebuildRate = 1 // the burst copies one segment, the second waits "forever"
	n := e.newNexus(cfg)
	seg := cfg.SegmentSize
	n.OfflineChild(t.Context(), cs[1])
	n.WriteAt(fill(1, 4096), 1*seg)
	n.WriteAt(fill(1, 4096), 2*seg)
	if err := n.OnlineChild(t.Context(), cs[1]); err != nil {
		t.Fatal(err)
	}
	n.WriteAt(fill(2, 4096), 5*seg) // during the rebuild, outside its plan
	if st := childState(n, cs[1]); st.State != ChildRebuilding {
		t.Fatalf("%+v", st)
	}
	n.crash()
	cfg.RebuildRate = 0
	n2 := e.newNexus(cfg)
	st := childState(n2, cs[1])
	if st.State != ChildFaulted || st.DirtySegments != 3 {
		t.Fatalf("after crash: %+v", st)
	}
	if err := n2.OnlineChild(t.Context(), cs[1]); err != nil {
		t.Fatal(err)
	}
	waitState(t, n2, cs[1], ChildOpen, 5*time.Second)
	if rec := lastRecord(t, n2); rec.Kind != rebuild.Partial || rec.Stats.SegmentsCopied != 3 {
		t.Fatalf("%+v", rec)
	}
	if e.sum(cs[0], n2.Size()) != e.sum(cs[1], n2.Size()) {
		t.Fatal("differ")
	}
}
