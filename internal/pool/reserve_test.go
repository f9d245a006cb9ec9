package pool

import (
	"errors"
	"testing"
)

// TestThickGuaranteeAcrossSnapshot: after a snapshot a thick replica's
// overwrites need new clusters; the pool keeps them free, so thin
// replicas run out of space first and the thick replica can still
// overwrite every cluster.
func TestThickGuaranteeAcrossSnapshot(t *testing.T) {
	p := mkPool(t, mallocDev(t, 64<<20), testCS)
	C := p.Stats().Clusters
	k := C / 3
	thick := mustReplica(t, p, "thick", k*testCS, false)
	for l := range k {
		write(t, thick, pattern(uint64(l), 4096), l*testCS)
	}
	if _, err := p.CreateSnapshot(ctx, "thick", "s1", ""); err != nil {
		t.Fatalf("snapshot with room for the guarantee: %v", err)
	}
	// Thin writes get what is left beyond the thick replica's reservation.
	thin := mustReplica(t, p, "thin", C*testCS, true)
	var got int64
	for l := range C {
		if _, err := thin.WriteAt(pattern(99, 4096), l*testCS); err != nil {
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("thin write %d: %v", l, err)
			}
			break
		}
		got++
	}
	if want := C - 2*k; got != want {
		t.Fatalf("thin replica got %d clusters, want %d (capacity %d, thick %d + its reservation %d)", got, want, C, k, k)
	}
	// The thick replica overwrites all of its clusters.
	for l := range k {
		write(t, thick, pattern(uint64(1000+l), 4096), l*testCS)
	}
	for l := range k {
		expect(t, "thick after overwrite", read(t, thick, 4096, l*testCS), pattern(uint64(1000+l), 4096))
	}
	s, err := p.Snapshot("s1")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "snapshot keeps the old data", read(t, s, 4096, 0), pattern(0, 4096))
	// Nothing is spare now: no thick replica, no thin cluster.
	if _, err := p.CreateReplica(ctx, "t2", ReplicaOptions{Size: testCS}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("thick create in a full pool: %v", err)
	}
	check(t, p)
	// Destroying the snapshot frees its clusters for the thin replica.
	if err := p.DestroySnapshot(ctx, "s1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := thin.WriteAt(pattern(98, 4096), got*testCS); err != nil {
		t.Fatalf("thin write after the snapshot was destroyed: %v", err)
	}
	check(t, p)
	q := reimport(t, p, p.dev)
	if _, err := q.CreateSnapshot(ctx, "thick", "s2", ""); !errors.Is(err, ErrNoSpace) {
		// k spare clusters are needed (the replica owns k); the pool has
		// C - k - (C-2k+1) = k-1.
		t.Fatalf("snapshot after re-import without room for the guarantee: %v", err)
	}
}

// TestThickSnapshotRefusedWithoutRoom: a snapshot that would leave a thick
// replica without room for its overwrites is refused and changes nothing.
func TestThickSnapshotRefusedWithoutRoom(t *testing.T) {
	p := mkPool(t, mallocDev(t, 64<<20), testCS)
	C := p.Stats().Clusters
	k := C/2 + 1
	thick := mustReplica(t, p, "thick", k*testCS, false)
	write(t, thick, pattern(1, 4096), 0)
	_, err := p.CreateSnapshot(ctx, "thick", "s", "")
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("snapshot of a thick replica larger than the free space: %v", err)
	}
	if n := len(p.Snapshots()); n != 0 {
		t.Fatalf("%d snapshots after a refused snapshot", n)
	}
	write(t, thick, pattern(2, 4096), 0) // still its own cluster: an overwrite in place
	expect(t, "thick", read(t, thick, 4096, 0), pattern(2, 4096))
	if st := p.Stats(); st.UsedClusters != k {
		t.Fatalf("used clusters %d, want %d", st.UsedClusters, k)
	}
	// Thin snapshots need no room.
	thin := mustReplica(t, p, "thin", 4*testCS, true)
	write(t, thin, pattern(3, 4096), 0)
	if _, err := p.CreateSnapshot(ctx, "thin", "ts", ""); err != nil {
		t.Fatalf("snapshot of a thin replica: %v", err)
	}
	check(t, p)
}

// TestThickCreateRespectsReservations: a thick create or grow may only use
// clusters beyond other thick replicas' reservations.
func TestThickCreateRespectsReservations(t *testing.T) {
	p := mkPool(t, mallocDev(t, 64<<20), testCS)
	C := p.Stats().Clusters
	k := C / 3
	mustReplica(t, p, "a", k*testCS, false)
	if _, err := p.CreateSnapshot(ctx, "a", "s", ""); err != nil {
		t.Fatal(err)
	}
	spare := C - 2*k
	if _, err := p.CreateReplica(ctx, "b", ReplicaOptions{Size: (spare + 1) * testCS}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("thick create eating a reservation: %v", err)
	}
	b := mustReplica(t, p, "b", spare*testCS, false)
	if err := p.ResizeReplica(ctx, "b", (spare+1)*testCS); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("thick grow eating a reservation: %v", err)
	}
	if b.Size() != spare*testCS {
		t.Fatalf("refused grow changed the size to %d", b.Size())
	}
	check(t, p)
}
