package engine

import (
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// TestNexusSnapshotRefusesFileChild: a nexus with a plain file child
// cannot be snapshotted as a whole; the request fails with
// FailedPrecondition before any child is snapshotted.
func TestNexusSnapshotRefusesFileChild(t *testing.T) {
	dir := t.TempDir()
	te := startEngine(t, filepath.Join(dir, "data"))
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 128<<20)
	file := sparseFile(t, dir, "file", 16<<20)
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{disk}}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "p", Name: "r1", Size: 16 << 20, Thin: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "vol", Children: []string{"bdev:///r1", "aio://" + file}}); err != nil {
		t.Fatal(err)
	}
	sc := enginev1.NewSnapshotServiceClient(te.conn)
	_, err := sc.CreateNexusSnapshot(ctx, &enginev1.CreateNexusSnapshotRequest{Nexus: "vol", Name: "ns"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("nexus snapshot with a file child: %v", err)
	}
	l, err := sc.ListSnapshots(ctx, &enginev1.ListSnapshotsRequest{})
	if err != nil || len(l.GetSnapshots()) != 0 {
		t.Fatalf("snapshots after the refusal: %v %v", l.GetSnapshots(), err)
	}
}
