package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/pool"
)

func TestCodeTable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("pool %q %w", "x", ErrNotFound), codes.NotFound},
		{fmt.Errorf("x: %w", pool.ErrNotFound), codes.NotFound},
		{fmt.Errorf("x: %w", pool.ErrExists), codes.AlreadyExists},
		{fmt.Errorf("x: %w", pool.ErrNoSpace), codes.ResourceExhausted},
		{fmt.Errorf("x: %w", blockdev.ErrNoSpace), codes.ResourceExhausted},
		{fmt.Errorf("x: %w", pool.ErrInUse), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", pool.ErrHasDependents), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", pool.ErrAlreadyPool), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", pool.ErrNotAPool), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", pool.ErrCorrupt), codes.DataLoss},
		{fmt.Errorf("x: %w", pool.ErrInvalidArgument), codes.InvalidArgument},
		{fmt.Errorf("x: %w", blockdev.ErrInvalidURI), codes.InvalidArgument},
		{fmt.Errorf("x: %w", blockdev.ErrUnknownScheme), codes.InvalidArgument},
		{fmt.Errorf("x: %w", ErrUnimplemented), codes.Unimplemented},
		{errors.New("boom"), codes.Internal},
	} {
		st := status.Convert(toStatus(tc.err))
		if st.Code() != tc.want {
			t.Errorf("%v -> %v, want %v", tc.err, st.Code(), tc.want)
		}
		if st.Message() != tc.err.Error() {
			t.Errorf("message %q, want %q", st.Message(), tc.err.Error())
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) != nil")
	}
}

// TestBadInput checks that bad requests fail with the right code and a
// clear message, and change nothing.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	te := startEngine(t, filepath.Join(dir, "data"))
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 100<<20)
	disk2 := sparseFile(t, dir, "disk2", 100<<20)
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "tpool", Disks: []string{disk}}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "tpool", Name: "r1", Size: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.bdev.CreateBdev(ctx, &enginev1.CreateBdevRequest{Uri: "malloc:///m0?size_mb=8"}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"pool not found", func() error {
			_, err := te.pool.DestroyPool(ctx, &enginev1.DestroyPoolRequest{Name: "nope"})
			return err
		}, codes.NotFound},
		{"list missing pool", func() error {
			_, err := te.pool.ListPools(ctx, &enginev1.ListPoolsRequest{Name: "nope"})
			return err
		}, codes.NotFound},
		{"replica in missing pool", func() error {
			_, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "nope", Name: "r", Size: 1 << 20})
			return err
		}, codes.NotFound},
		{"destroy missing replica", func() error {
			_, err := te.replica.DestroyReplica(ctx, &enginev1.DestroyReplicaRequest{Pool: "tpool", Name: "nope"})
			return err
		}, codes.NotFound},
		{"pool on a disk in use", func() error {
			_, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "other", Disks: []string{disk}})
			return err
		}, codes.FailedPrecondition},
		{"pool on a disk in use, by URI", func() error {
			_, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "other", Disks: []string{"aio://" + disk + "?blk_size=512"}})
			return err
		}, codes.FailedPrecondition},
		{"bdev on a pool disk", func() error {
			_, err := te.bdev.CreateBdev(ctx, &enginev1.CreateBdevRequest{Uri: disk, Name: "d"})
			return err
		}, codes.FailedPrecondition},
		{"pool name taken", func() error {
			_, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "tpool", Disks: []string{disk2}})
			return err
		}, codes.AlreadyExists},
		{"bad pool name", func() error {
			_, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "bad/name", Disks: []string{disk2}})
			return err
		}, codes.InvalidArgument},
		{"no disk", func() error {
			_, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p2"})
			return err
		}, codes.InvalidArgument},
		{"unknown scheme", func() error {
			_, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p2", Disks: []string{"foo:///bar"}})
			return err
		}, codes.InvalidArgument},
		{"bad URI parameter", func() error {
			_, err := te.bdev.CreateBdev(ctx, &enginev1.CreateBdevRequest{Uri: "malloc:///m1?size_mb=8&colour=red"})
			return err
		}, codes.InvalidArgument},
		{"missing disk", func() error {
			_, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p2", Disks: []string{filepath.Join(dir, "missing")}})
			return err
		}, codes.NotFound},
		{"zero size", func() error {
			_, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "tpool", Name: "r0", Size: 0})
			return err
		}, codes.InvalidArgument},
		{"no space", func() error {
			_, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "tpool", Name: "big", Size: 1 << 30})
			return err
		}, codes.ResourceExhausted},
		{"replica name taken with other size", func() error {
			_, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "tpool", Name: "r1", Size: 8 << 20})
			return err
		}, codes.AlreadyExists},
		{"bad host NQN", func() error {
			_, err := te.replica.ShareReplica(ctx, &enginev1.ShareReplicaRequest{Pool: "tpool", Name: "r1", Options: &enginev1.ShareOptions{
				Protocol: enginev1.ShareProtocol_SHARE_PROTOCOL_NVMF, AllowedHosts: []string{"not-an-nqn"}}})
			return err
		}, codes.InvalidArgument},
		{"NVMe/TCP share with an empty allow-list", func() error {
			_, err := te.replica.ShareReplica(ctx, &enginev1.ShareReplicaRequest{Pool: "tpool", Name: "r1", Options: &enginev1.ShareOptions{
				Protocol: enginev1.ShareProtocol_SHARE_PROTOCOL_NVMF}})
			return err
		}, codes.InvalidArgument},
		{"bad NBD client", func() error {
			_, err := te.replica.ShareReplica(ctx, &enginev1.ShareReplicaRequest{Pool: "tpool", Name: "r1", Options: &enginev1.ShareOptions{
				Protocol: enginev1.ShareProtocol_SHARE_PROTOCOL_NBD, AllowedHosts: []string{"nqn.2014-08.org.nvmexpress:uuid:x"}}})
			return err
		}, codes.InvalidArgument},
		{"create and share with a bad NQN", func() error {
			_, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "tpool", Name: "r9", Size: 4 << 20,
				Share: &enginev1.ShareOptions{AllowedHosts: []string{"bogus"}}})
			return err
		}, codes.InvalidArgument},
		{"create and share with a taken export name", func() error {
			_, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "tpool", Name: "m0", Size: 4 << 20,
				Share: &enginev1.ShareOptions{Protocol: enginev1.ShareProtocol_SHARE_PROTOCOL_NBD}})
			return err
		}, codes.AlreadyExists},
		{"bdev name taken", func() error {
			_, err := te.bdev.CreateBdev(ctx, &enginev1.CreateBdevRequest{Uri: "malloc:///m0?size_mb=16"})
			return err
		}, codes.AlreadyExists},
		{"nexus not found", func() error {
			_, err := te.nexus.DestroyNexus(ctx, &enginev1.DestroyNexusRequest{Name: "nope"})
			return err
		}, codes.NotFound},
		{"nexus child is a pool disk", func() error {
			_, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "nx", Children: []string{disk}})
			return err
		}, codes.FailedPrecondition},
		{"nexus child missing", func() error {
			_, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "nx", Children: []string{"bdev:///nope"}})
			return err
		}, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			st := status.Convert(err)
			if st.Code() != tc.want {
				t.Fatalf("code %v (%v), want %v", st.Code(), err, tc.want)
			}
			if st.Message() == "" {
				t.Fatal("empty message")
			}
			t.Logf("%v: %s", st.Code(), st.Message())
		})
	}

	// Nothing changed.
	pl, err := te.pool.ListPools(ctx, &enginev1.ListPoolsRequest{})
	if err != nil || len(pl.GetPools()) != 1 || pl.GetPools()[0].GetName() != "tpool" {
		t.Fatalf("pools after bad input: %v %v", pl, err)
	}
	rl, err := te.replica.ListReplicas(ctx, &enginev1.ListReplicasRequest{})
	if err != nil || len(rl.GetReplicas()) != 1 || rl.GetReplicas()[0].GetShare() != nil {
		t.Fatalf("replicas after bad input: %v %v", rl, err)
	}
	bl, err := te.bdev.ListBdevs(ctx, &enginev1.ListBdevsRequest{})
	if err != nil || len(bl.GetBdevs()) != 1 || bl.GetBdevs()[0].GetSize() != 8<<20 {
		t.Fatalf("bdevs after bad input: %v %v", bl, err)
	}
	// The second disk was never written: a pool can be created on it.
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p2", Disks: []string{disk2}}); err != nil {
		t.Fatalf("create on untouched disk: %v", err)
	}
}
