package nexus

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

// TestNexusQueueConformance: a nexus over one io_uring child offers
// per-thread queues that pass the queue conformance suite.
func TestNexusQueueConformance(t *testing.T) {
	blockdevtest.RunQueue(t, func(t *testing.T) blockdev.Device { return uringNexus(t, 1) })
}

// TestNexusQueueLayouts: a nexus with several children declines queues;
// a queue opened on a one-child nexus declines I/O once a second child is
// added (the caller goes synchronous, which mirrors), and the nexus data
// stay right.
func TestNexusQueueLayouts(t *testing.T) {
	if _, err := uringNexus(t, 3).OpenQueue(); !errors.Is(err, blockdev.ErrNotSupported) {
		t.Fatalf("OpenQueue on a 3-child nexus: %v, want ErrNotSupported", err)
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
