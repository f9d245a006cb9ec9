package engine

import (
	"path/filepath"
	"testing"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

// TestBorrowedReplicaAsync: a replica in a pool on an io_uring disk keeps
// its asynchronous fast path when borrowed through bdev:/// (as a nexus
// child), and the handle passes the Async conformance suite; a closed
// handle starts nothing.
func TestBorrowedReplicaAsync(t *testing.T) {
	if blockdev.BareScheme() != "uring" {
		t.Skip("io_uring unavailable: pools use aio")
	}
	dir := t.TempDir()
	te := startEngine(t, filepath.Join(dir, "data"))
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 200<<20)
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{disk}}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "p", Name: "r", Size: blockdevtest.MinSize}); err != nil {
		t.Fatal(err)
	}
	blockdevtest.RunAsync(t, func(t *testing.T) blockdev.Device {
		d, err := te.e.Registry().Open(ctx, "bdev:///r")
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
	d, err := te.e.Registry().Open(ctx, "bdev:///r")
	if err != nil {
		t.Fatal(err)
	}
	a, ok := d.(blockdev.Async)
	if !ok {
		t.Fatalf("borrowed replica %T lost blockdev.Async", d)
	}
	d.Close()
	if a.StartQueued(false, blockdev.AlignedBuffer(4096), 0, nil) {
		t.Fatal("closed handle started I/O")
	}
}
