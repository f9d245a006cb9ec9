package nexus

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

func TestWriteErrorFaultsChildBeforeAck(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(3)
	n := e.newNexus(e.config(cs...))
	e.fault(cs[1]).Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Count: 1})
	if _, err := n.WriteAt(fill(7, 4096), 8192); err != nil {
		t.Fatalf("write with one failing child: %v", err)
	}
	// The store already says so when the write is acknowledged.
	info, err := e.store.Load(t.Context(), "nx-uuid")
	if err != nil {
		t.Fatal(err)
	}
	if info.Children[1].Healthy || !info.Children[0].Healthy || !info.Children[2].Healthy {
		t.Fatalf("info after fault: %+v", info)
	}
	st := childState(n, cs[1])
	if st.State != ChildFaulted || !strings.Contains(st.Reason, "io-error") {
		t.Fatalf("child state %+v", st)
	}
	if n.State() != Degraded {
		t.Fatalf("nexus state %v", n.State())
	}
	got := make([]byte, 4096)
	for range 4 { // every read is served by a healthy child
		if _, err := n.ReadAt(got, 8192); err != nil || !bytes.Equal(got, fill(7, 4096)) {
			t.Fatalf("read back: %v", err)
		}
	}
	// The write the faulted child missed is in its dirty log.
	if st.DirtySegments != 1 {
		t.Fatalf("dirty segments %d, want 1", st.DirtySegments)
	}
}

func TestReadErrorRetriesOnOtherChild(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	n := e.newNexus(e.config(cs...))
	if _, err := n.WriteAt(fill(9, 4096), 0); err != nil {
		t.Fatal(err)
	}
	e.fault(cs[0]).Inject(blockdev.FaultRule{Ops: blockdev.OpRead})
	e.fault(cs[1]).Inject(blockdev.FaultRule{Ops: blockdev.OpRead, Count: 0, Rate: 1e-9}) // never fires
	got := make([]byte, 4096)
	for i := 0; i < 20 && childState(n, cs[0]).State == ChildOpen; i++ {
		if _, err := n.ReadAt(got, 0); err != nil || !bytes.Equal(got, fill(9, 4096)) {
			t.Fatalf("read: %v", err)
		}
	}
	if st := childState(n, cs[0]); st.State != ChildFaulted {
		t.Fatalf("child 0: %+v", st)
	}
}

func TestFlushErrorFaultsChild(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	n := e.newNexus(e.config(cs...))
	e.fault(cs[0]).Inject(blockdev.FaultRule{Ops: blockdev.OpFlush, Count: 1})
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	if childState(n, cs[0]).State != ChildFaulted {
		t.Fatal("child 0 not faulted by flush error")
	}
	if s := e.fault(cs[1]).Stats(blockdev.OpFlush); s.Errors != 0 {
		t.Fatal("unexpected")
	}
}

func TestLastHealthyChildNeverFaulted(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	n := e.newNexus(e.config(cs...))
	if err := n.FaultChild(t.Context(), cs[0], "test"); err != nil {
		t.Fatal(err)
	}
	if err := n.FaultChild(t.Context(), cs[1], "test"); !errors.Is(err, ErrLastHealthy) {
		t.Fatalf("fault last: %v", err)
	}
	if err := n.OfflineChild(t.Context(), cs[1]); !errors.Is(err, ErrLastHealthy) {
		t.Fatalf("offline last: %v", err)
	}
	if err := n.RemoveChild(t.Context(), cs[1]); !errors.Is(err, ErrLastHealthy) {
		t.Fatalf("remove last: %v", err)
	}
	e.fault(cs[1]).Inject(blockdev.FaultRule{Ops: blockdev.OpWrite | blockdev.OpRead, Count: 2})
	if _, err := n.WriteAt(fill(1, 512), 0); !errors.Is(err, blockdev.ErrIO) {
		t.Fatalf("write on failing last child: %v", err)
	}
	if _, err := n.ReadAt(make([]byte, 512), 0); !errors.Is(err, blockdev.ErrIO) {
		t.Fatalf("read on failing last child: %v", err)
	}
	if st := childState(n, cs[1]); st.State != ChildOpen {
		t.Fatalf("last healthy child: %+v", st)
	}
	info, _ := e.store.Load(t.Context(), "nx-uuid")
	if !info.Children[1].Healthy {
		t.Fatalf("last healthy child persisted unhealthy: %+v", info)
	}
	// It recovers once the device works again.
	if _, err := n.WriteAt(fill(1, 512), 0); err != nil {
		t.Fatal(err)
	}
	if n.State() != Degraded {
		t.Fatal(n.State())
	}
}

func TestNoHealthyChildFailsCleanly(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	cfg := e.config(cs...)
	n := e.newNexus(cfg)
	n.crash()
	// Both recorded healthy, unclean: one is kept. Make it unopenable.
	e.fail[cs[0]] = errors.New("gone")
	e.fail[cs[1]] = errors.New("gone")
	if _, err := New(t.Context(), cfg); !errors.Is(err, ErrNoHealthy) {
		t.Fatalf("all children unopenable: %v", err)
	}
	delete(e.fail, cs[1])
	// Child 1 opens but is not trusted if the store says unhealthy.
	e.store.Store(t.Context(), "nx-uuid", Info{Children: []ChildInfo{{URI: cs[0], Healthy: true}, {URI: cs[1], Healthy: false}}})
	n2 := e.newNexus(cfg)
	if n2.State() != Faulted {
		t.Fatalf("state %v", n2.State())
	}
	if _, err := n2.WriteAt(fill(1, 512), 0); !errors.Is(err, blockdev.ErrIO) {
		t.Fatalf("write on faulted nexus: %v", err)
	}
	if _, err := n2.ReadAt(make([]byte, 512), 0); !errors.Is(err, blockdev.ErrIO) {
		t.Fatalf("read on faulted nexus: %v", err)
	}
}

func TestHungChildTimesOut(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	cfg := e.config(cs...)
	cfg.ChildTimeout = 100 * time.Millisecond
	n := e.newNexus(cfg)
	f1 := e.fault(cs[1])
	f1.Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Hang: true})
	start := time.Now()
	if _, err := n.WriteAt(fill(3, 4096), 0); err != nil {
		t.Fatalf("write with hung child: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("write took %v", d)
	}
	st := childState(n, cs[1])
	if st.State != ChildFaulted || !strings.Contains(st.Reason, "timeout") {
		t.Fatalf("hung child: %+v", st)
	}
	// The hung device is closed (which releases the call), then the child
	// can come back: partial rebuild of the one segment it missed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := n.OnlineChild(t.Context(), cs[1])
		if err == nil {
			break
		}
		if !errors.Is(err, ErrChildBusy) || time.Now().After(deadline) {
			t.Fatalf("online: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitState(t, n, cs[1], ChildOpen, 5*time.Second)
	if e.sum(cs[0], n.Size()) != e.sum(cs[1], n.Size()) {
		t.Fatal("children differ after rebuild")
	}
}

func TestSlowChildNotFaulted(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	cfg := e.config(cs...)
	cfg.ChildTimeout = 500 * time.Millisecond
	n := e.newNexus(cfg)
	e.fault(cs[1]).Inject(blockdev.FaultRule{Ops: blockdev.OpAll, Delay: 20 * time.Millisecond})
	for i := range 5 {
		if _, err := n.WriteAt(fill(byte(i), 512), int64(i)*512); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	if n.State() != Online {
		t.Fatalf("slow child faulted: %+v", n.Children())
	}
}

func TestInfoStoreFailureFailsIO(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	ms := NewMemStore()
	e.store = ms
	n := e.newNexus(e.config(cs...))
	ms.mu.Lock()
	ms.Fail = errors.New("etcd down")
	ms.mu.Unlock()
	e.fault(cs[1]).Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Count: 1})
	if _, err := n.WriteAt(fill(1, 512), 0); !errors.Is(err, blockdev.ErrIO) {
		t.Fatalf("write when the fault cannot be persisted: %v", err)
	}
	if n.State() != Faulted {
		t.Fatalf("state %v", n.State())
	}
	if _, err := n.WriteAt(fill(1, 512), 0); !errors.Is(err, blockdev.ErrIO) {
		t.Fatalf("later write: %v", err)
	}
}

func TestUncleanRestartTrustsOneChild(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(3)
	cfg := e.config(cs...)
	n := e.newNexus(cfg)
	n.WriteAt(fill(5, 4096), 0)
	if err := n.FaultChild(t.Context(), cs[2], "test"); err != nil {
		t.Fatal(err)
	}
	n.WriteAt(fill(6, 4096), 1<<20)
	n.crash()

	n2 := e.newNexus(cfg)
	want := []ChildState{ChildOpen, ChildFaulted, ChildFaulted}
	for i, c := range n2.Children() {
		if c.State != want[i] {
			t.Fatalf("child %d: %+v", i, c)
		}
	}
	if r := childState(n2, cs[1]).Reason; !strings.Contains(r, "unclean") {
		t.Fatalf("reason %q", r)
	}
	if d := childState(n2, cs[2]).DirtySegments; d != 1 {
		t.Fatalf("child 2 dirty segments after restart: %d", d)
	}
	for _, c := range cs[1:] {
		if err := n2.OnlineChild(t.Context(), c); err != nil {
			t.Fatal(err)
		}
		waitState(t, n2, c, ChildOpen, 5*time.Second)
	}
	h := n2.RebuildHistory()
	if len(h) != 2 || h[0].Kind != "full" || h[1].Kind != "partial" || h[1].Stats.BytesCopied != 64<<10 {
		t.Fatalf("history %+v", h)
	}
	for _, c := range cs[1:] {
		if e.sum(c, n2.Size()) != e.sum(cs[0], n2.Size()) {
			t.Fatalf("%s differs", c)
		}
	}
}

func TestCleanRestartKeepsHealthyChildren(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(3)
	cfg := e.config(cs...)
	n := e.newNexus(cfg)
	if err := n.OfflineChild(t.Context(), cs[0]); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := n.WriteAt(fill(1, 512), 0); !errors.Is(err, ErrShutdown) {
		t.Fatalf("write after shutdown: %v", err)
	}
	info, _ := e.store.Load(t.Context(), "nx-uuid")
	if !info.CleanShutdown {
		t.Fatal("not clean")
	}
	n2 := e.newNexus(cfg)
	if got := []ChildState{childState(n2, cs[0]).State, childState(n2, cs[1]).State, childState(n2, cs[2]).State}; got[0] != ChildFaulted || got[1] != ChildOpen || got[2] != ChildOpen {
		t.Fatalf("states %v", got)
	}
}

func TestAddRemoveChild(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(3)
	n := e.newNexus(e.config(cs[0]))
	n.WriteAt(fill(4, 64<<10), 128<<10)
	if err := n.AddChild(t.Context(), cs[1]); err != nil {
		t.Fatal(err)
	}
	if err := n.AddChild(t.Context(), cs[1]); !errors.Is(err, ErrChildExists) {
		t.Fatal(err)
	}
	waitState(t, n, cs[1], ChildOpen, 5*time.Second)
	if e.sum(cs[0], n.Size()) != e.sum(cs[1], n.Size()) {
		t.Fatal("differ")
	}
	if err := n.RemoveChild(t.Context(), cs[0]); err != nil {
		t.Fatal(err)
	}
	if err := n.RemoveChild(t.Context(), cs[0]); !errors.Is(err, ErrChildNotFound) {
		t.Fatal(err)
	}
	info, _ := e.store.Load(t.Context(), "nx-uuid")
	if len(info.Children) != 1 || info.Children[0].URI != cs[1] || !info.Children[0].Healthy {
		t.Fatalf("info %+v", info)
	}
	got := make([]byte, 64<<10)
	if _, err := n.ReadAt(got, 128<<10); err != nil || !bytes.Equal(got, fill(4, 64<<10)) {
		t.Fatal("data lost")
	}
}

func TestCorruptDirtyLogMeansFullRebuild(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	cfg := e.config(cs...)
	n := e.newNexus(cfg)
	n.OfflineChild(t.Context(), cs[1])
	n.WriteAt(fill(1, 4096), 0)
	n.crash()
	logs, _ := filepath.Glob(filepath.Join(e.dir, "*.dlog"))
	if len(logs) != 1 {
		t.Fatal(logs)
	}
	os.WriteFile(logs[0], []byte("garbage"), 0o644)
	n2 := e.newNexus(cfg)
	if st := childState(n2, cs[1]); st.State != ChildFaulted || st.DirtySegments != 0 {
		t.Fatalf("%+v", st)
	}
	if logs, _ := filepath.Glob(filepath.Join(e.dir, "*.dlog")); len(logs) != 0 {
		t.Fatalf("corrupt log kept: %v", logs)
	}
	if err := n2.OnlineChild(t.Context(), cs[1]); err != nil {
		t.Fatal(err)
	}
	waitState(t, n2, cs[1], ChildOpen, 5*time.Second)
	if rec := lastRecord(t, n2); rec.Kind != "full" {
		t.Fatalf("%+v", rec)
	}
	if e.sum(cs[0], n2.Size()) != e.sum(cs[1], n2.Size()) {
		t.Fatal("differ")
	}
}
