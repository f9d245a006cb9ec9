package blockdev

import (
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// chunkDone counts reported completions (safe from any goroutine).
type chunkDone struct {
	mu   sync.Mutex
	n    int
	err  error
	done chan struct{} // closed at want completions
	want int
}

func (c *chunkDone) IODone(_ int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if err != nil {
		c.err = err
	}
	if c.n == c.want {
		close(c.done)
	}
}
func (c *chunkDone) IOFlush() {}

// TestSubmitChunk: StartQueued holds back at most submitChunk operations;
// the one that makes a chunk full submits them all at once, on the shared
// ring and on a Queue, and the rest wait for Submit (or Wait).
func TestSubmitChunk(t *testing.T) {
	const bs = 4096
	n := int(submitChunk) + 3
	path := filepath.Join(t.TempDir(), "chunk.img")
	if err := os.WriteFile(path, make([]byte, n*bs), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := OpenUring(path, FileOptions{BlockSize: bs})
	if err != nil {
		t.Skipf("io_uring: %v", err)
	}
	defer u.Close()
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = AlignedBuffer(bs)
	}
	check := func(t *testing.T, r *ring, start func(i int) bool) {
		t.Helper()
		for i := range n {
			if !start(i) {
				t.Fatalf("operation %d refused", i)
			}
			want := uint32(i+1) % submitChunk
			if i+1 > int(submitChunk) {
				want = uint32(i + 1 - int(submitChunk))
			}
			if got := r.unsubmitted(); got != want {
				t.Fatalf("after %d operations: %d unsubmitted, want %d", i+1, got, want)
			}
		}
	}

	t.Run("shared", func(t *testing.T) {
		c := &chunkDone{done: make(chan struct{}), want: n}
		check(t, u.r, func(i int) bool { return u.StartQueued(false, bufs[i], int64(i*bs), c) })
		u.Submit()
		<-c.done
		if c.err != nil {
			t.Fatal(c.err)
		}
	})
	t.Run("queue", func(t *testing.T) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		q, err := u.OpenQueue()
		if err != nil {
			t.Skipf("queue: %v", err)
		}
		uq := q.(*uringQueue)
		c := &chunkDone{done: make(chan struct{}), want: n}
		check(t, uq.r, func(i int) bool { return q.StartQueued(true, bufs[i], int64(i*bs), c) })
		for q.Inflight() > 0 {
			if _, err := q.Wait(-1); err != nil {
				t.Fatal(err)
			}
		}
		if c.n != n || c.err != nil {
			t.Fatalf("%d of %d reported, err %v", c.n, n, c.err)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
