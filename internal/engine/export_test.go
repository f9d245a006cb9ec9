package engine

import (
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// TestExportImport moves a pool between two engines.
func TestExportImport(t *testing.T) {
	dir := t.TempDir()
	a := startEngine(t, filepath.Join(dir, "a"))
	b := startEngine(t, filepath.Join(dir, "b"))
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 64<<20)
	if _, err := a.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{disk}}); err != nil {
		t.Fatal(err)
	}
	r, err := a.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "p", Name: "r1", Size: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.pool.ExportPool(ctx, &enginev1.ExportPoolRequest{Name: "p"}); err != nil {
		t.Fatal(err)
	}
	// The disk holds a pool: creating another one on it is refused.
	_, err = b.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "q", Disks: []string{disk}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("create on a pool disk: %v, want FailedPrecondition", err)
	}
	if _, err := b.pool.ImportPool(ctx, &enginev1.ImportPoolRequest{Disks: []string{disk}, Name: "other"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("import with wrong name: %v", err)
	}
	imp, err := b.pool.ImportPool(ctx, &enginev1.ImportPoolRequest{Disks: []string{disk}})
	if err != nil {
		t.Fatal(err)
	}
	if imp.GetPool().GetName() != "p" || imp.GetPool().GetReplicaCount() != 1 {
		t.Fatalf("imported %v", imp.GetPool())
	}
	// Importing again is a no-op.
	if _, err := b.pool.ImportPool(ctx, &enginev1.ImportPoolRequest{Disks: []string{disk}}); err != nil {
		t.Fatalf("repeated import: %v", err)
	}
	l, err := b.replica.ListReplicas(ctx, &enginev1.ListReplicasRequest{})
	if err != nil || len(l.GetReplicas()) != 1 || l.GetReplicas()[0].GetUuid() != r.GetReplica().GetUuid() {
		t.Fatalf("replicas on b: %v %v", l, err)
	}
	pl, _ := a.pool.ListPools(ctx, &enginev1.ListPoolsRequest{})
	if len(pl.GetPools()) != 0 {
		t.Fatalf("a still lists %v", pl)
	}
}
