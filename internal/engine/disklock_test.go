package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// TestPoolDiskLockedAcrossEngines: a second engine (here in the same
// process, which flock treats the same way as another process) cannot
// import or create a pool on a disk whose pool another engine holds, and
// nothing on the disk changes; after the export it can.
func TestPoolDiskLockedAcrossEngines(t *testing.T) {
	dir := t.TempDir()
	a := startEngine(t, filepath.Join(dir, "a"))
	b := startEngine(t, filepath.Join(dir, "b"))
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 64<<20)
	if _, err := a.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{disk}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "p", Name: "r", Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.pool.ImportPool(ctx, &enginev1.ImportPoolRequest{Disks: []string{disk}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second engine imported a held pool: %v", err)
	}
	_, err = b.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "q", Disks: []string{disk}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second engine created a pool on a held disk: %v", err)
	}
	if after, err := os.ReadFile(disk); err != nil || string(after) != string(before) {
		t.Fatalf("refused import/create changed the disk (err %v)", err)
	}
	if _, err := a.pool.ExportPool(ctx, &enginev1.ExportPoolRequest{Name: "p"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.ImportPool(ctx, &enginev1.ImportPoolRequest{Disks: []string{disk}}); err != nil {
		t.Fatalf("import after export: %v", err)
	}
	l, err := b.replica.ListReplicas(ctx, &enginev1.ListReplicasRequest{})
	if err != nil || len(l.GetReplicas()) != 1 {
		t.Fatalf("replicas after move: %v %v", l, err)
	}
	// The first engine cannot take it back while the second holds it.
	if _, err := a.pool.ImportPool(ctx, &enginev1.ImportPoolRequest{Disks: []string{disk}}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("first engine re-imported a held pool: %v", err)
	}
}
