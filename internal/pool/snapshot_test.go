package pool

import (
	"errors"
	"fmt"
	"testing"
)

func TestSnapshotDivergence(t *testing.T) {
	dev := mallocDev(t, 64<<20)
	p := mkPool(t, dev, testCS)
	for _, thin := range []bool{false, true} {
		name := fmt.Sprint("r", thin)
		r := mustReplica(t, p, name, 1<<20, thin)
		a := pattern(1, 1<<20)
		write(t, r, a, 0)
		used := p.Stats().UsedClusters
		s, err := p.CreateSnapshot(ctx, name, name+"-s1", "")
		if err != nil {
			t.Fatal(err)
		}
		if p.Stats().UsedClusters != used {
			t.Fatal("snapshot allocated space")
		}
		if s2, err := p.CreateSnapshot(ctx, name, name+"-s1", s.UUID()); err != nil || s2 != s {
			t.Fatalf("idempotent snapshot: %v", err)
		}
		b := pattern(2, 8192)
		write(t, r, b, testCS+4096) // COW of one cluster
		want := append([]byte(nil), a...)
		copy(want[testCS+4096:], b)
		expect(t, "replica", read(t, r, 1<<20, 0), want)
		expect(t, "snapshot", read(t, s, 1<<20, 0), a)
		if _, err := s.WriteAt(b, 0); err == nil {
			t.Fatal("snapshot writable")
		}
		info := s.Info()
		if info.Source != name || info.ReferencedBytes != 1<<20 || info.ExclusiveBytes != testCS || info.Size != 1<<20 {
			t.Fatalf("snapshot info %+v", info)
		}
		if ri := r.Info(); ri.Parent != name+"-s1" || ri.AllocatedBytes != testCS {
			t.Fatalf("replica info %+v", ri)
		}
		// Unmap of a whole cluster in the replica reads zeros, not the snapshot.
		if err := r.Unmap(2*testCS, testCS); err != nil {
			t.Fatal(err)
		}
		if !isZero(read(t, r, testCS, 2*testCS)) {
			t.Fatal("unmapped cluster shows snapshot data")
		}
		expect(t, "snapshot after unmap", read(t, s, testCS, 2*testCS), a[2*testCS:3*testCS])
		check(t, p)
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		p = reimport(t, p, dev)
		r, _ = p.Replica(name)
		s, _ = p.Snapshot(name + "-s1")
		copy(want[2*testCS:3*testCS], make([]byte, testCS))
		expect(t, "replica after reimport", read(t, r, 1<<20, 0), want)
		expect(t, "snapshot after reimport", read(t, s, 1<<20, 0), a)
		// Destroying the snapshot merges it into the replica.
		if err := p.DestroySnapshot(ctx, name+"-s1", false); err != nil {
			t.Fatal(err)
		}
		expect(t, "replica after snapshot destroy", read(t, r, 1<<20, 0), want)
		if r.Info().Parent != "" {
			t.Fatal("parent kept")
		}
		check(t, p)
	}
}

func TestCloneAndDependents(t *testing.T) {
	dev := mallocDev(t, 64<<20)
	p := mkPool(t, dev, testCS)
	r := mustReplica(t, p, "r", 1<<20, true)
	a := pattern(1, 1<<20)
	write(t, r, a[:512<<10], 0) // half written
	a = append(a[:512<<10], make([]byte, 512<<10)...)
	if _, err := p.CreateSnapshot(ctx, "r", "snap", ""); err != nil {
		t.Fatal(err)
	}
	c, err := p.CloneSnapshot(ctx, "snap", "clone", "")
	if err != nil {
		t.Fatal(err)
	}
	if ci := c.Info(); !ci.Clone || !ci.Thin || ci.Parent != "snap" || ci.AllocatedBytes != 0 {
		t.Fatalf("clone info %+v", ci)
	}
	expect(t, "clone reads parent", read(t, c, 1<<20, 0), a)
	if ok, _ := c.Allocated(0, testCS); !ok {
		t.Fatal("clone range backed by snapshot not reported allocated")
	}
	cw := pattern(3, 4096)
	write(t, c, cw, 8192)
	wantC := append([]byte(nil), a...)
	copy(wantC[8192:], cw)
	expect(t, "clone after write", read(t, c, 1<<20, 0), wantC)
	s, _ := p.Snapshot("snap")
	expect(t, "snapshot unchanged", read(t, s, 1<<20, 0), a)
	expect(t, "replica unchanged", read(t, r, 1<<20, 0), a)
	if err := p.DestroySnapshot(ctx, "snap", false); !errors.Is(err, ErrHasDependents) {
		t.Fatalf("destroy with clone: %v", err)
	}
	if si := s.Info(); len(si.Clones) != 1 || si.Clones[0] != "clone" {
		t.Fatalf("clones %+v", si)
	}
	check(t, p)
	used := p.Stats().UsedClusters
	if err := p.DestroySnapshot(ctx, "snap", true); err != nil {
		t.Fatal(err)
	}
	expect(t, "clone after force destroy", read(t, c, 1<<20, 0), wantC)
	expect(t, "replica after force destroy", read(t, r, 1<<20, 0), a)
	if c.Info().Parent != "" || r.Info().Parent != "" {
		t.Fatal("parents remain")
	}
	// Inflation copied the 7 clusters the clone read through to.
	if got := p.Stats().UsedClusters; got != used+7 {
		t.Fatalf("used clusters %d, want %d", got, used+7)
	}
	check(t, p)
	p = reimport(t, p, dev)
	c, _ = p.Replica("clone")
	expect(t, "clone after reimport", read(t, c, 1<<20, 0), wantC)

	// A snapshot whose only dependent is a clone (its source replica is
	// gone) is not merged into the clone silently: that needs --force.
	if _, err := p.CreateSnapshot(ctx, "clone", "snap2", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CloneSnapshot(ctx, "snap2", "clone2", ""); err != nil {
		t.Fatal(err)
	}
	if err := p.DestroyReplica(ctx, "clone"); err != nil {
		t.Fatal(err)
	}
	if err := p.DestroySnapshot(ctx, "snap2", false); !errors.Is(err, ErrHasDependents) {
		t.Fatalf("destroy of a snapshot with one clone: %v", err)
	}
	if err := p.DestroySnapshot(ctx, "snap2", true); err != nil {
		t.Fatal(err)
	}
	c2, _ := p.Replica("clone2")
	expect(t, "clone2 after its snapshot was destroyed", read(t, c2, 1<<20, 0), wantC)
	check(t, p)
}

// TestChainDepth64 builds a chain of 64 snapshots (of a replica and of
// clones) and checks every level reads correctly, also after re-import.
func TestChainDepth64(t *testing.T) {
	dev := mallocDev(t, 64<<20)
	p := mkPool(t, dev, testCS)
	const depth = 64
	size := int64(depth) * 4096
	cur := mustReplica(t, p, "r0", size, true)
	model := make([]byte, size)
	snaps := make([][]byte, 0, depth)
	for i := 0; i < depth; i++ {
		d := pattern(uint64(i), 4096)
		write(t, cur, d, int64(i)*4096)
		copy(model[i*4096:], d)
		sn := fmt.Sprint("s", i)
		if _, err := p.CreateSnapshot(ctx, cur.Name(), sn, ""); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, append([]byte(nil), model...))
		if i%2 == 1 { // alternate: continue in a clone
			c, err := p.CloneSnapshot(ctx, sn, fmt.Sprint("c", i), "")
			if err != nil {
				t.Fatal(err)
			}
			cur = c
		}
	}
	verify := func(p *Pool) {
		for i := 0; i < depth; i++ {
			s, err := p.Snapshot(fmt.Sprint("s", i))
			if err != nil {
				t.Fatal(err)
			}
			expect(t, fmt.Sprint("snapshot ", i), read(t, s, int(size), 0), snaps[i])
		}
		r, _ := p.Replica(cur.Name())
		expect(t, "tip", read(t, r, int(size), 0), model)
	}
	verify(p)
	check(t, p)
	p = reimport(t, p, dev)
	verify(p)
}

// TestMergeRespectsShrink: destroying a snapshot merges its clusters into
// its only child, but only where the child reads through: a replica
// shrunk after the first snapshot (and grown again) shows zeros past the
// shrink point, and so does its later snapshot — the merge must not make
// the old data reappear there (found by TestRandomOps in long mode).
func TestMergeRespectsShrink(t *testing.T) {
	p := mkPool(t, mallocDev(t, 32<<20), testCS)
	r := mustReplica(t, p, "r", 4*testCS, true)
	for l := range int64(4) {
		write(t, r, pattern(uint64(l+1), 4096), l*testCS)
	}
	if _, err := p.CreateSnapshot(ctx, "r", "s1", ""); err != nil {
		t.Fatal(err)
	}
	if err := p.ResizeReplica(ctx, "r", testCS); err != nil {
		t.Fatal(err)
	}
	if err := p.ResizeReplica(ctx, "r", 4*testCS); err != nil {
		t.Fatal(err)
	}
	s2, err := p.CreateSnapshot(ctx, "r", "s2", "")
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 4096)
	check := func(when string) {
		t.Helper()
		expect(t, when+": s2 cluster 0", read(t, s2, 4096, 0), pattern(1, 4096))
		expect(t, when+": r cluster 0", read(t, r, 4096, 0), pattern(1, 4096))
		for l := int64(1); l < 4; l++ {
			expect(t, fmt.Sprintf("%s: s2 cluster %d", when, l), read(t, s2, 4096, l*testCS), zero)
			expect(t, fmt.Sprintf("%s: r cluster %d", when, l), read(t, r, 4096, l*testCS), zero)
		}
	}
	check("before")
	if err := p.DestroySnapshot(ctx, "s1", false); err != nil {
		t.Fatal(err)
	}
	check("after destroying s1")
	q := reimport(t, p, p.dev)
	s2, _ = q.Snapshot("s2")
	r, _ = q.Replica("r")
	check("after re-import")
}
