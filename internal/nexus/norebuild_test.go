package nexus

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/rebuild"
)

// garbage fills the backing disk of uri with b, behind the nexus' back.
func (e *env) garbage(uri string, b byte) {
	e.t.Helper()
	m := e.disk(uri)
	if _, err := m.WriteAt(fill(b, int(e.size)), 0); err != nil {
		e.t.Fatal(err)
	}
}

// TestAddChildNoRebuild: an out-of-sync child takes no reads and no
// writes, does not count as healthy, is persisted out of sync, and a
// later StartRebuild makes it a byte-identical mirror under writes.
func TestAddChildNoRebuild(t *testing.T) {
	e := newEnv(t, 8<<20)
	cs := uris(3)
	cfg := e.config(cs[:2]...)
	cfg.RebuildRate = 16 << 20 // ~0.5 s for 8 MiB: writes interleave with the copy
	n := e.newNexus(cfg)
	ctx := t.Context()
	if _, err := n.WriteAt(fill(7, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	if err := n.AddChildNoRebuild(ctx, cs[2]); err != nil {
		t.Fatal(err)
	}
	if err := n.AddChildNoRebuild(ctx, cs[2]); !errors.Is(err, ErrChildExists) {
		t.Fatalf("second add: %v, want ErrChildExists", err)
	}
	st := childState(n, cs[2])
	if st.State != ChildOutOfSync || st.Reason != ReasonNotRebuilt || st.RebuildProgress != 0 {
		t.Fatalf("added child: %+v", st)
	}
	if s := n.State(); s != Degraded {
		t.Fatalf("nexus state %v, want degraded", s)
	}
	if k := n.Status().Rebuilds; k != 0 {
		t.Fatalf("%d rebuilds running, want none", k)
	}
	info, err := e.store.Load(ctx, cfg.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if ci := info.Children[2]; ci.URI != cs[2] || ci.Healthy || !ci.OutOfSync {
		t.Fatalf("persisted %+v, want unhealthy and out of sync", ci)
	}

	// Garbage on the out-of-sync disk: a read from it, or a write to it,
	// would show.
	e.garbage(cs[2], 0xee)
	untouched := e.sum(cs[2], n.Size())
	for i := range int64(16) {
		if _, err := n.WriteAt(fill(byte(i+1), 64<<10), i*512<<10); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 {
		buf := make([]byte, 64<<10)
		if _, err := n.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, fill(1, 64<<10)) {
			t.Fatal("read served by the out-of-sync child")
		}
	}
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	if e.sum(cs[2], n.Size()) != untouched {
		t.Fatal("a write reached the out-of-sync child")
	}
	e.mu.Lock()
	got := e.opens[cs[2]]
	e.mu.Unlock()
	if got != 1 {
		t.Fatalf("out-of-sync child opened %d times, want 1 (the add's check)", got)
	}

	// Rebuild control refuses it until a rebuild runs; start it under
	// concurrent writes.
	if _, err := n.RebuildStats(cs[2]); !errors.Is(err, ErrNoRebuild) {
		t.Fatalf("stats before start: %v", err)
	}
	stop := make(chan struct{})
	wg := writeLoad(t, n, 4, stop)
	time.Sleep(30 * time.Millisecond)
	if err := n.StartRebuild(ctx, cs[2]); err != nil {
		t.Fatal(err)
	}
	// Rebuilding (or, on a fast machine, already healthy): refused.
	if err := n.StartRebuild(ctx, cs[2]); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("start while rebuilding: %v, want ErrInvalidState", err)
	}
	waitState(t, n, cs[2], ChildOpen, 20*time.Second)
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	want := e.sum(cs[0], n.Size())
	for _, c := range cs {
		if e.sum(c, n.Size()) != want {
			t.Fatalf("child %s differs from %s after rebuild", c, cs[0])
		}
	}
	rec := lastRecord(t, n)
	if rec.Child != cs[2] || rec.Kind != rebuild.Full || rec.State != rebuild.Completed {
		t.Fatalf("record %+v, want a completed full rebuild of %s", rec, cs[2])
	}
	if n.State() != Online {
		t.Fatalf("nexus %v after rebuild", n.State())
	}
	if err := n.StartRebuild(ctx, cs[2]); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("start on a healthy child: %v, want ErrInvalidState", err)
	}
	if err := n.StartRebuild(ctx, "malloc:///nope"); !errors.Is(err, ErrChildNotFound) {
		t.Fatalf("start on an unknown child: %v, want ErrChildNotFound", err)
	}
	info, _ = e.store.Load(ctx, cfg.UUID)
	if ci := info.Children[2]; !ci.Healthy || ci.OutOfSync {
		t.Fatalf("persisted after rebuild %+v", ci)
	}
}

// TestOutOfSyncChildSurvivesRestart: after a clean or unclean restart a
// child added without rebuild is still out of sync (never trusted, never
// resynced automatically), and StartRebuild then does a full rebuild.
func TestOutOfSyncChildSurvivesRestart(t *testing.T) {
	for _, restart := range []string{"clean", "crash"} {
		t.Run(restart, func(t *testing.T) {
			e := newEnv(t, 4<<20)
			cs := uris(3)
			cfg := e.config(cs[:2]...)
			n := e.newNexus(cfg)
			ctx := t.Context()
			if _, err := n.WriteAt(fill(3, 1<<20), 0); err != nil {
				t.Fatal(err)
			}
			if err := n.AddChildNoRebuild(ctx, cs[2]); err != nil {
				t.Fatal(err)
			}
			// A stray dirty log must not turn its rebuild into a partial one.
			if l, _, err := rebuild.OpenLog(logPath(e.dir, cfg.UUID, cs[2]), cfg.SegmentSize, n.nseg); err != nil {
				t.Fatal(err)
			} else {
				if err := l.Mark(0, 4096); err != nil {
					t.Fatal(err)
				}
				l.Close()
			}
			if restart == "clean" {
				if err := n.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				n.crash()
			}
			cfg.Children = cs
			n = e.newNexus(cfg)
			st := childState(n, cs[2])
			if st.State != ChildOutOfSync || st.Reason != ReasonNotRebuilt || st.DirtySegments != 0 {
				t.Fatalf("after %s restart: %+v", restart, st)
			}
			if childState(n, cs[0]).State != ChildOpen {
				t.Fatalf("served child after restart: %+v", n.Children())
			}
			if err := n.StartRebuild(ctx, cs[2]); err != nil {
				t.Fatal(err)
			}
			waitState(t, n, cs[2], ChildOpen, 10*time.Second)
			rec := lastRecord(t, n)
			if rec.Kind != rebuild.Full || rec.State != rebuild.Completed || rec.Stats.BytesTotal != n.Size() {
				t.Fatalf("record %+v", rec)
			}
			if e.sum(cs[2], n.Size()) != e.sum(cs[0], n.Size()) {
				t.Fatal("rebuilt child differs")
			}
		})
	}
}

// TestOutOfSyncChildAdmin: online starts its rebuild too, fault/offline
// reclassify it (persisted), remove drops it; geometry is checked at add.
func TestOutOfSyncChildAdmin(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(4)
	cfg := e.config(cs[:2]...)
	n := e.newNexus(cfg)
	ctx := t.Context()
	for _, c := range cs[2:] {
		if err := n.AddChildNoRebuild(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.OfflineChild(ctx, cs[2]); err != nil {
		t.Fatal(err)
	}
	if st := childState(n, cs[2]); st.State != ChildOffline || st.DirtySegments != 0 {
		t.Fatalf("offlined out-of-sync child: %+v", st)
	}
	info, _ := e.store.Load(ctx, cfg.UUID)
	if ci := info.Children[2]; ci.Healthy || ci.OutOfSync {
		t.Fatalf("persisted offline child %+v", ci)
	}
	if err := n.OnlineChild(ctx, cs[3]); err != nil {
		t.Fatal(err)
	}
	waitState(t, n, cs[3], ChildOpen, 10*time.Second)
	if rec := lastRecord(t, n); rec.Child != cs[3] || rec.Kind != rebuild.Full {
		t.Fatalf("record %+v", rec)
	}
	if err := n.RemoveChild(ctx, cs[2]); err != nil {
		t.Fatal(err)
	}
	if len(n.Children()) != 3 {
		t.Fatalf("children %+v", n.Children())
	}

	small, err := blockdev.NewMalloc("malloc:///small", 1<<20, 512)
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.back["malloc:///small"] = small
	e.mu.Unlock()
	if err := n.AddChildNoRebuild(ctx, "malloc:///small"); !errors.Is(err, ErrConfig) {
		t.Fatalf("too small child: %v, want ErrConfig", err)
	}
	if len(n.Children()) != 3 {
		t.Fatalf("children after refused add %+v", n.Children())
	}
}
