package nexus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// noClose keeps a backing malloc alive across child reopen: closing a
// child instance must not destroy the "disk".
type noClose struct{ blockdev.Device }

func (noClose) Close() error { return nil }

func (d noClose) Allocated(off, length int64) (bool, error) {
	return d.Device.(blockdev.Allocation).Allocated(off, length)
}

// env is a set of backing disks opened through fault wrappers.
type env struct {
	t     testing.TB
	size  int64
	bs    int
	store InfoStore
	dir   string // log dir

	mu     sync.Mutex // guards the maps
	back   map[string]*blockdev.Malloc
	faults map[string]*blockdev.Fault // current instance of each URI
	opens  map[string]int
	fail   map[string]error // opener failures
}

func newEnv(t testing.TB, size int64) *env {
	return &env{t: t, size: size, bs: 512, store: NewMemStore(), dir: t.TempDir(),
		back: map[string]*blockdev.Malloc{}, faults: map[string]*blockdev.Fault{},
		opens: map[string]int{}, fail: map[string]error{}}
}

func (e *env) open(_ context.Context, uri string) (blockdev.Device, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.fail[uri]; err != nil {
		return nil, err
	}
	m := e.back[uri]
	if m == nil {
		var err error
		if m, err = blockdev.NewMalloc(uri, e.size, e.bs); err != nil {
			return nil, err
		}
		e.back[uri] = m
	}
	f := blockdev.NewFault(noClose{m})
	e.faults[uri] = f
	e.opens[uri]++
	if asyncChildren {
		return &asyncAdapter{Fault: f}, nil
	}
	return f, nil
}

func (e *env) fault(uri string) *blockdev.Fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.faults[uri]
}

func (e *env) disk(uri string) *blockdev.Malloc {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.back[uri]
}

func uris(k int) []string {
	out := make([]string, k)
	for i := range out {
		out[i] = fmt.Sprintf("malloc:///c%d", i)
	}
	return out
}

func (e *env) config(children ...string) Config {
	return Config{Name: "nx", UUID: "nx-uuid", Children: children, Opener: e.open, Store: e.store,
		LogDir: e.dir, ChildTimeout: 2 * time.Second, SegmentSize: 64 << 10,
		Logger: slog.New(slog.DiscardHandler)}
}

func (e *env) newNexus(cfg Config) *Nexus {
	e.t.Helper()
	n, err := New(context.Background(), cfg)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	e.t.Cleanup(func() { n.Shutdown(context.Background()) })
	return n
}

// sum hashes the first size bytes of a backing disk.
func (e *env) sum(uri string, size int64) [32]byte {
	e.t.Helper()
	m := e.disk(uri)
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), size-off)]
		if _, err := m.ReadAt(b, off); err != nil {
			e.t.Fatal(err)
		}
		h.Write(b)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

func childState(n *Nexus, uri string) ChildStatus {
	for _, c := range n.Children() {
		if c.URI == uri {
			return c
		}
	}
	return ChildStatus{URI: uri, State: ChildClosed}
}

// waitState waits until uri reaches want.
func waitState(t testing.TB, n *Nexus, uri string, want ChildState, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if childState(n, uri).State == want {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("child %s: state %v, want %v (children %+v)", uri, childState(n, uri).State, want, n.Children())
}

func fill(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
