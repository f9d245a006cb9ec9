package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// TestRestartKeepsWhatCannotBeRecreated: a bdev whose file vanished and a
// pool whose disk vanished are listed as unavailable/faulted after a
// restart, stay in the state file for the next start, and destroy/export
// forgets them.
func TestRestartKeepsWhatCannotBeRecreated(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	te := startEngine(t, data)
	ctx := ctxT(t)
	bfile := sparseFile(t, dir, "bfile", 8<<20)
	pdisk := sparseFile(t, dir, "pdisk", 64<<20)
	if _, err := te.bdev.CreateBdev(ctx, &enginev1.CreateBdevRequest{Uri: "aio://" + bfile, Name: "b1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{pdisk}}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "nx", Children: []string{"bdev:///b1"}}); err != nil {
		t.Fatal(err)
	}
	te.stop()
	if err := os.Remove(bfile); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(pdisk, pdisk+".away"); err != nil {
		t.Fatal(err)
	}

	for round := 0; round < 2; round++ {
		te = startEngine(t, data)
		bl, err := te.bdev.ListBdevs(ctx, &enginev1.ListBdevsRequest{})
		if err != nil || len(bl.GetBdevs()) != 1 || !strings.HasPrefix(bl.GetBdevs()[0].GetClaimedBy(), "unavailable") {
			t.Fatalf("round %d: bdevs %v %v", round, bl, err)
		}
		nl, err := te.nexus.ListNexuses(ctx, &enginev1.ListNexusesRequest{})
		if err != nil || len(nl.GetNexuses()) != 1 || nl.GetNexuses()[0].GetState() != enginev1.NexusState_NEXUS_STATE_FAULTED {
			t.Fatalf("round %d: nexuses %v %v", round, nl, err)
		}
		pl, err := te.pool.ListPools(ctx, &enginev1.ListPoolsRequest{})
		if err != nil || len(pl.GetPools()) != 1 || pl.GetPools()[0].GetState() != enginev1.PoolState_POOL_STATE_FAULTED {
			t.Fatalf("round %d: pools %v %v", round, pl, err)
		}
		te.stop()
	}
	// The disk is back: the pool comes back by itself.
	if err := os.Rename(pdisk+".away", pdisk); err != nil {
		t.Fatal(err)
	}
	te = startEngine(t, data)
	pl, err := te.pool.ListPools(ctx, &enginev1.ListPoolsRequest{})
	if err != nil || pl.GetPools()[0].GetState() != enginev1.PoolState_POOL_STATE_ONLINE {
		t.Fatalf("pool after the disk came back: %v %v", pl, err)
	}
	if _, err := te.nexus.DestroyNexus(ctx, &enginev1.DestroyNexusRequest{Name: "nx"}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.bdev.DestroyBdev(ctx, &enginev1.DestroyBdevRequest{Name: "b1"}); err != nil {
		t.Fatal(err)
	}
	te.stop()
	st, err := loadState(data)
	if err != nil || len(st.Bdevs) != 0 || len(st.Nexuses) != 0 || len(st.Pools) != 1 {
		t.Fatalf("state after destroys: %+v %v", st, err)
	}
}
