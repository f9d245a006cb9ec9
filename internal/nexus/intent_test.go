package nexus

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/rebuild"
)

func intentFiles(t *testing.T, e *env) []string {
	t.Helper()
	f, _ := filepath.Glob(filepath.Join(e.dir, "*-intent-*.dlog"))
	return f
}

// TestWriteIntentPartialResync: after an unclean shutdown with every child
// healthy, the untrusted children copy only the segments that had writes
// in flight (here: written since the last rotation), not everything.
func TestWriteIntentPartialResync(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(3)
	cfg := e.config(cs...)
	cfg.WriteIntent = true
	cfg.IntentInterval = time.Hour // no rotation during the test
	n := e.newNexus(cfg)
	seg := cfg.SegmentSize
	for _, s := range []int64{2, 7, 7, 40} {
		if _, err := n.WriteAt(fill(byte(s), 4096), s*seg); err != nil {
			t.Fatal(err)
		}
	}
	n.crash()
	n2 := e.newNexus(cfg)
	if st := childState(n2, cs[0]); st.State != ChildOpen {
		t.Fatalf("%+v", st)
	}
	for _, c := range cs[1:] {
		st := childState(n2, c)
		if st.State != ChildFaulted || st.DirtySegments != 3 || !strings.Contains(st.Reason, "resync of 3 segments") {
			t.Fatalf("%+v", st)
		}
		if err := n2.OnlineChild(t.Context(), c); err != nil {
			t.Fatal(err)
		}
		waitState(t, n2, c, ChildOpen, 5*time.Second)
		if rec := lastRecord(t, n2); rec.Kind != rebuild.Partial || rec.Stats.SegmentsCopied != 3 {
			t.Fatalf("%+v", rec)
		}
		if e.sum(c, n2.Size()) != e.sum(cs[0], n2.Size()) {
			t.Fatal("differ")
		}
	}
	// The previous run's intent files are gone; one current generation.
	if f := intentFiles(t, e); len(f) != 1 {
		t.Fatalf("intent files %v", f)
	}
}

func TestWriteIntentRotationAndCleanShutdown(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	cfg := e.config(cs...)
	cfg.WriteIntent = true
	cfg.IntentInterval = 20 * time.Millisecond
	n := e.newNexus(cfg)
	seg := cfg.SegmentSize
	n.WriteAt(fill(1, 4096), 1*seg)
	time.Sleep(200 * time.Millisecond) // rotated out, flushed, removed
	n.WriteAt(fill(3, 4096), 3*seg)
	n.crash()
	n2 := e.newNexus(cfg)
	if st := childState(n2, cs[1]); st.DirtySegments != 1 {
		t.Fatalf("only the recent write should need resync: %+v", st)
	}
	if err := n2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f := intentFiles(t, e); len(f) != 0 {
		t.Fatalf("clean shutdown left intent files %v", f)
	}
	// Clean restart: the healthy child is trusted, the resyncing one keeps
	// its log.
	n3 := e.newNexus(cfg)
	if childState(n3, cs[0]).State != ChildOpen || childState(n3, cs[1]).DirtySegments != 1 {
		t.Fatalf("%+v", n3.Children())
	}
}

func TestNoWriteIntentMeansFullResync(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	cfg := e.config(cs...)
	n := e.newNexus(cfg)
	n.WriteAt(fill(1, 4096), 0)
	n.crash()
	n2 := e.newNexus(cfg)
	if st := childState(n2, cs[1]); st.State != ChildFaulted || st.DirtySegments != 0 {
		t.Fatalf("%+v", st)
	}
}
