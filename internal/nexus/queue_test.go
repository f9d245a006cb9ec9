package nexus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

// TestNexusQueueConformance: a nexus over one or three io_uring children
// offers per-thread queues that pass the queue conformance suite.
func TestNexusQueueConformance(t *testing.T) {
	for _, k := range []int{1, 3} {
		t.Run(fmt.Sprintf("children=%d", k), func(t *testing.T) {
			blockdevtest.RunQueue(t, func(t *testing.T) blockdev.Device { return uringNexus(t, k) })
		})
	}
}

// TestNexusQueueMirror: writes through a queue on a 3-way nexus over
// io_uring files reach every child (one ring carries them all), and reads
// through it return them.
func TestNexusQueueMirror(t *testing.T) {
	n := uringNexus(t, 3)
	defer n.Shutdown(t.Context())
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	q, err := n.OpenQueue()
	must(t, err)
	const ops = 96
	bufs := make([][]byte, ops)
	res := make([]queueResult, ops)
	for i := range ops {
		bufs[i] = blockdev.AlignedBuffer(8192)
		copy(bufs[i], fill(byte(i+1), 8192))
		if !q.StartQueued(true, bufs[i], int64(i)*8192, &res[i]) {
			t.Fatalf("queue refused write %d", i)
		}
		if i%16 == 15 {
			must(t, waitAll(q))
		}
	}
	must(t, waitAll(q))
	for i := range res {
		if res[i].done != 1 || res[i].err != nil {
			t.Fatalf("write %d: done %d, err %v", i, res[i].done, res[i].err)
		}
	}
	for _, c := range n.snap.Load().healthy {
		b := make([]byte, ops*8192)
		if _, err := c.dev.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		for i := range ops {
			if !bytes.Equal(b[i*8192:(i+1)*8192], bufs[i]) {
				t.Fatalf("child %s: block %d differs", c.c.uri, i)
			}
		}
	}
	got := blockdev.AlignedBuffer(8192)
	for i := range ops { // reads go round the children
		var r queueResult
		if !q.StartQueued(false, got, int64(i)*8192, &r) {
			t.Fatalf("queue refused read %d", i)
		}
		must(t, waitAll(q))
		if r.done != 1 || r.err != nil || !bytes.Equal(got, bufs[i]) {
			t.Fatalf("read %d: done %d, err %v, equal %v", i, r.done, r.err, bytes.Equal(got, bufs[i]))
		}
	}
	must(t, q.Close())
}

// waitAll waits until nothing is in flight on q.
func waitAll(q blockdev.Queue) error {
	for q.Inflight() > 0 {
		if _, err := q.Wait(-1); err != nil {
			return err
		}
	}
	return nil
}

// TestNexusQueueLayouts: a nexus whose children cannot share a ring
// declines queues; a queue opened on a one-child nexus declines I/O once a
// second child is added (the caller goes synchronous, which mirrors), and
// the nexus data stay right.
func TestNexusQueueLayouts(t *testing.T) {
	e := newEnv(t, blockdevtest.MinSize)
	if _, err := e.newNexus(e.config(uris(2)...)).OpenQueue(); !errors.Is(err, blockdev.ErrNotSupported) {
		t.Fatalf("OpenQueue on a nexus over malloc children: %v, want ErrNotSupported", err)
	}
	n := uringNexus(t, 1)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	q, err := n.OpenQueue()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	buf := blockdev.AlignedBuffer(4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	var res queueResult
	if !q.StartQueued(true, buf, 0, &res) {
		t.Fatal("queue refused a write on a one-child nexus")
	}
	if err := blockdev.WaitFd(q, -1); err != nil || res.done != 1 || res.err != nil {
		t.Fatalf("write through the queue: wait %v, done %d, err %v", err, res.done, res.err)
	}
	// A second child: the queue's child is no longer the only one.
	path := filepath.Join(t.TempDir(), "c9.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, blockdevtest.MinSize); err != nil {
		t.Fatal(err)
	}
	if err := n.AddChild(context.Background(), "uring://"+path); err != nil {
		t.Fatal(err)
	}
	if q.StartQueued(false, buf, 0, &res) {
		t.Fatal("queue started a read although the nexus has two children")
	}
	got := blockdev.AlignedBuffer(4096)
	if _, err := n.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != byte(i) {
			t.Fatalf("byte %d reads %d after the layout change", i, got[i])
		}
	}
}

// queueResult records one completion (the owner's goroutine only).
type queueResult struct {
	done int
	err  error
}

func (r *queueResult) IODone(_ int, err error) { r.done++; r.err = err }
func (r *queueResult) IOFlush()                {}

// hangDev is a child device whose queue holds every operation until
// released, then fails it: a hung disk behind a per-thread queue.
type hangDev struct {
	*blockdev.Malloc
	q *hangQueue
}

func (d *hangDev) StartQueued(bool, []byte, int64, blockdev.IOCompletion) bool { return false }
func (d *hangDev) Submit()                                                     {}
func (d *hangDev) OpenQueue() (blockdev.Queue, error)                          { return d.q, nil }

type hangQueue struct {
	cbs     []blockdev.IOCompletion // owner only
	release chan struct{}
}

func (q *hangQueue) StartQueued(_ bool, _ []byte, _ int64, cb blockdev.IOCompletion) bool {
	q.cbs = append(q.cbs, cb)
	return true
}
func (q *hangQueue) Submit()       {}
func (q *hangQueue) Inflight() int { return len(q.cbs) }
func (q *hangQueue) Close() error  { _, err := q.Wait(-1); return err }

func (q *hangQueue) Wait(int) (bool, error) {
	if len(q.cbs) == 0 {
		return false, nil
	}
	<-q.release
	cbs := q.cbs
	q.cbs = nil
	for _, cb := range cbs {
		cb.IODone(0, errors.New("hung disk gave up"))
	}
	for _, cb := range cbs {
		cb.IOFlush()
	}
	return false, nil
}

// queueNexus returns a one-child nexus whose child is dev, with a short
// child timeout.
func queueNexus(t *testing.T, dev blockdev.Device) *Nexus {
	t.Helper()
	e := newEnv(t, blockdevtest.MinSize)
	cfg := e.config("hang:///c0")
	cfg.ChildTimeout = 200 * time.Millisecond
	cfg.Opener = func(context.Context, string) (blockdev.Device, error) { return dev, nil }
	return e.newNexus(cfg)
}

// TestNexusQueueTimeout: a request on a queue whose owner is busy
// elsewhere past the child timeout (its completion cannot be posted until
// the owner waits) completes normally and leaves the child healthy; a
// request the device holds while the owner waits fails after the timeout,
// as on the shared path (the last healthy child is kept, not faulted).
func TestNexusQueueTimeout(t *testing.T) {
	t.Run("owner_busy", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "c.img")
		must(t, os.WriteFile(path, nil, 0o600))
		must(t, os.Truncate(path, blockdevtest.MinSize))
		u, err := blockdev.OpenUring(path, blockdev.FileOptions{BlockSize: 4096})
		if err != nil {
			t.Skipf("io_uring: %v", err)
		}
		n := queueNexus(t, u)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		q, err := n.OpenQueue()
		must(t, err)
		defer q.Close()
		buf := blockdev.AlignedBuffer(4096)
		var res queueResult
		if !q.StartQueued(false, buf, 0, &res) {
			t.Fatal("queue refused a read")
		}
		q.Submit()
		time.Sleep(1500 * time.Millisecond) // 7 child timeouts without waiting
		must(t, blockdev.WaitFd(q, -1))
		if res.done != 1 || res.err != nil {
			t.Fatalf("read: done %d, err %v", res.done, res.err)
		}
		if st := n.Children()[0].State; st != ChildOpen {
			t.Fatalf("child %v after a late reap, want open", st)
		}
	})
	t.Run("device_hung", func(t *testing.T) {
		m, err := blockdev.NewMalloc("hang", blockdevtest.MinSize, 512)
		must(t, err)
		hq := &hangQueue{release: make(chan struct{})}
		n := queueNexus(t, &hangDev{Malloc: m, q: hq})
		q, err := n.OpenQueue()
		must(t, err)
		res := make(chan error, 1)
		cb := &chanResult{ch: res}
		if !q.StartQueued(false, make([]byte, 4096), 0, cb) {
			t.Fatal("queue refused a read")
		}
		waited := make(chan error, 1)
		go func() { _, err := q.Wait(-1); waited <- err }() // the owner waits; the disk holds the read
		select {
		case err := <-res:
			if err == nil {
				t.Fatal("read held by a hung disk succeeded")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no timeout for a read the disk holds while the owner waits")
		}
		close(hq.release)
		must(t, <-waited)
		must(t, q.Close())
	})
}

// chanResult sends the result of one operation.
type chanResult struct{ ch chan error }

func (r *chanResult) IODone(_ int, err error) { r.ch <- err }
func (r *chanResult) IOFlush()                {}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
