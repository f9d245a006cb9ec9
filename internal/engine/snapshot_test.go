package engine

import (
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func TestSnapshots(t *testing.T) {
	dir := t.TempDir()
	te := startEngine(t, filepath.Join(dir, "data"))
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 128<<20)
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{disk}, ClusterSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"r1", "r2"} {
		if _, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "p", Name: n, Size: 8 << 20, Thin: true}); err != nil {
			t.Fatal(err)
		}
	}
	sc := enginev1.NewSnapshotServiceClient(te.conn)
	s, err := sc.CreateSnapshot(ctx, &enginev1.CreateSnapshotRequest{Pool: "p", Replica: "r1", Name: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if s.GetSnapshot().GetSource() != "r1" || s.GetSnapshot().GetSize() != 8<<20 {
		t.Fatalf("snapshot = %v", s.GetSnapshot())
	}
	c, err := sc.CloneSnapshot(ctx, &enginev1.CloneSnapshotRequest{Pool: "p", Snapshot: "s1", CloneName: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.GetReplica().GetName() != "c1" {
		t.Fatalf("clone = %v", c.GetReplica())
	}
	l, err := sc.ListSnapshots(ctx, &enginev1.ListSnapshotsRequest{})
	if err != nil || len(l.GetSnapshots()) != 1 || len(l.GetSnapshots()[0].GetClones()) != 1 {
		t.Fatalf("list = %v %v", l, err)
	}
	if _, err := sc.DestroySnapshot(ctx, &enginev1.DestroySnapshotRequest{Pool: "p", Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("destroy missing snapshot: %v", err)
	}

	if _, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "vol", Children: []string{"bdev:///r1", "bdev:///r2"}}); err != nil {
		t.Fatal(err)
	}
	ns, err := sc.CreateNexusSnapshot(ctx, &enginev1.CreateNexusSnapshotRequest{Nexus: "vol", Name: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.GetSnapshots()) != 2 || ns.GetSnapshots()[0].GetName() != "ns-r1" || ns.GetSnapshots()[1].GetName() != "ns-r2" {
		t.Fatalf("nexus snapshot = %v", ns)
	}
	// The nexus keeps serving I/O after the snapshot.
	l2, err := te.nexus.ListNexuses(ctx, &enginev1.ListNexusesRequest{Name: "vol"})
	if err != nil || l2.GetNexuses()[0].GetState() != enginev1.NexusState_NEXUS_STATE_ONLINE {
		t.Fatalf("nexus after snapshot: %v %v", l2, err)
	}
	if _, err := sc.DestroySnapshot(ctx, &enginev1.DestroySnapshotRequest{Pool: "p", Name: "s1", Force: true}); err != nil {
		t.Fatal(err)
	}
}
