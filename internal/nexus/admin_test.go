package nexus

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

func TestFileStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "info")
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(t.Context(), "x"); !errors.Is(err, ErrNoInfo) {
		t.Fatalf("load missing: %v", err)
	}
	in := Info{CleanShutdown: true, Children: []ChildInfo{{URI: "aio:///a", Healthy: true}, {URI: "nvmf://h/n", Healthy: false}}}
	if err := s.Store(t.Context(), "x", in); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(t.Context(), "x")
	if err != nil || !got.CleanShutdown || len(got.Children) != 2 || got.Children[1].Healthy {
		t.Fatalf("%+v %v", got, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 { // no temp files left behind
		t.Fatalf("dir holds %d entries", len(ents))
	}
	os.WriteFile(filepath.Join(dir, "nexus-y.json"), []byte("{"), 0o644)
	if _, err := s.Load(t.Context(), "y"); err == nil || errors.Is(err, ErrNoInfo) {
		t.Fatalf("corrupt info: %v", err)
	}
}

func TestPauseResume(t *testing.T) {
	e := newEnv(t, 4<<20)
	n := e.newNexus(e.config(uris(2)...))
	if err := n.Pause(t.Context()); err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	go func() {
		n.WriteAt(fill(1, 512), 0)
		done.Store(true)
	}()
	time.Sleep(50 * time.Millisecond)
	if done.Load() {
		t.Fatal("write completed while paused")
	}
	n.Resume()
	deadline := time.Now().Add(2 * time.Second)
	for !done.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !done.Load() {
		t.Fatal("write not resumed")
	}
	// Pause waits for in-flight I/O; a deadline undoes it.
	e.fault(uris(2)[0]).Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Delay: 300 * time.Millisecond, Count: 1})
	go n.WriteAt(fill(2, 512), 0)
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := n.Pause(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pause with slow I/O: %v", err)
	}
	if _, err := n.WriteAt(fill(3, 512), 512); err != nil {
		t.Fatalf("gate left paused: %v", err)
	}
}

func TestAddChildGeometry(t *testing.T) {
	e := newEnv(t, 4<<20)
	n := e.newNexus(e.config(uris(1)...))
	small, _ := blockdev.NewMalloc("small", 1<<20, 512)
	big4k, _ := blockdev.NewMalloc("4k", 8<<20, 4096)
	n.cfg.Opener = func(_ context.Context, uri string) (blockdev.Device, error) {
		if uri == "small" {
			return small, nil
		}
		return big4k, nil
	}
	if err := n.AddChild(t.Context(), "small"); !errors.Is(err, ErrConfig) {
		t.Fatalf("too small: %v", err)
	}
	if err := n.AddChild(t.Context(), "4k"); !errors.Is(err, ErrConfig) {
		t.Fatalf("block size: %v", err)
	}
	if len(n.Children()) != 1 {
		t.Fatal("bad child added")
	}
}

func TestStatusAndDestroy(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	n := e.newNexus(e.config(cs...))
	if err := n.OfflineChild(t.Context(), cs[1]); err != nil {
		t.Fatal(err)
	}
	n.WriteAt(fill(1, 4096), 0)
	st := n.Status()
	if st.State != Degraded || st.Size != 4<<20 || st.BlockSize != 512 || len(st.Children) != 2 ||
		st.Children[1].State != ChildOffline || st.Children[1].DirtySegments != 1 {
		t.Fatalf("%+v", st)
	}
	logs, _ := filepath.Glob(filepath.Join(e.dir, "*.dlog"))
	if len(logs) != 1 {
		t.Fatalf("logs %v", logs)
	}
	if err := n.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	if logs, _ := filepath.Glob(filepath.Join(e.dir, "*.dlog")); len(logs) != 0 {
		t.Fatalf("destroy left logs %v", logs)
	}
	if n.State() != Shutdown {
		t.Fatal(n.State())
	}
	if err := n.AddChild(t.Context(), "x"); !errors.Is(err, ErrShutdown) {
		t.Fatal(err)
	}
	if err := n.Close(); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatal(err)
	}
}
