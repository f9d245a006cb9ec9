package pool

import (
	"errors"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

func TestThickThinSemantics(t *testing.T) {
	dev := mallocDev(t, 64<<20)
	p := mkPool(t, dev, testCS)
	thick := mustReplica(t, p, "thick", 1<<20, false)
	thin := mustReplica(t, p, "thin", 1<<20, true)
	if s := p.Stats(); s.UsedClusters != 16 {
		t.Fatalf("thick should reserve 16 clusters: %+v", s)
	}
	for _, r := range []*Replica{thick, thin} {
		if !isZero(read(t, r, 1<<20, 0)) {
			t.Fatalf("%s: never-written data not zero", r.Name())
		}
	}
	if ok, _ := thin.Allocated(0, 1<<20); ok {
		t.Fatal("empty thin replica reports allocated")
	}
	d := pattern(5, 8192)
	write(t, thin, d, testCS+4096)
	if i := thin.Info(); i.AllocatedBytes != testCS {
		t.Fatalf("thin after one write: %+v", i)
	}
	if ok, _ := thin.Allocated(testCS, testCS); !ok {
		t.Fatal("written cluster not allocated")
	}
	if ok, _ := thin.Allocated(0, testCS); ok {
		t.Fatal("unwritten cluster allocated")
	}
	got := read(t, thin, testCS, testCS)
	if !isZero(got[:4096]) || !isZero(got[4096+8192:]) {
		t.Fatal("rest of a first-written cluster not zero")
	}
	expect(t, "thin data", got[4096:4096+8192], d)
	// Partial unmap zeroes in place, whole-cluster unmap releases.
	if err := thin.Unmap(testCS+4096, 4096); err != nil {
		t.Fatal(err)
	}
	if !isZero(read(t, thin, 4096, testCS+4096)) || thin.Info().AllocatedBytes != testCS {
		t.Fatal("partial unmap")
	}
	if err := thin.Unmap(testCS, testCS); err != nil {
		t.Fatal(err)
	}
	if thin.Info().AllocatedBytes != 0 || !isZero(read(t, thin, testCS, testCS)) {
		t.Fatal("whole-cluster unmap did not release")
	}
	// Thick: unmap zeroes but keeps the reservation.
	write(t, thick, d, 0)
	if err := thick.WriteZeroes(0, testCS); err != nil {
		t.Fatal(err)
	}
	if thick.Info().AllocatedBytes != 1<<20 || !isZero(read(t, thick, 8192, 0)) {
		t.Fatal("thick write zeroes")
	}
	check(t, p)
	p = reimport(t, p, dev)
	thin, _ = p.Replica("thin")
	if thin.Info().AllocatedBytes != 0 {
		t.Fatal("release not persisted")
	}
}

func TestZerosAfterReuse(t *testing.T) {
	dev := mallocDev(t, 16<<20)
	p := mkPool(t, dev, testCS)
	total := p.Stats().Capacity
	// Fill the whole pool with non-zero data in a thin replica, then free it.
	a := mustReplica(t, p, "a", total, true)
	junk := pattern(9, int(total))
	write(t, a, junk, 0)
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := p.DestroyReplica(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// Thin reuse: partial writes leave the rest of each cluster zero.
	half := total / 2 / testCS * testCS
	b := mustReplica(t, p, "b", half, true)
	for off := int64(0); off < half; off += testCS {
		write(t, b, []byte{1: 0xAA, 4095: 0xBB}, off+8192)
	}
	got := read(t, b, int(half), 0)
	for off := int64(0); off < half; off += testCS {
		c := got[off : off+testCS]
		c[8192+1], c[8192+4095] = 0, 0
		if !isZero(c) {
			t.Fatalf("thin replica sees old data in cluster at %d", off)
		}
	}
	// Thick reuse of the rest: all zero.
	th := mustReplica(t, p, "c", total-half-testCS, false)
	if !isZero(read(t, th, int(th.Size()), 0)) {
		t.Fatal("thick replica sees old data")
	}
	check(t, p)
}

func TestNoSpace(t *testing.T) {
	dev := mallocDev(t, 16<<20)
	p := mkPool(t, dev, testCS)
	capacity := p.Stats().Capacity
	keep := mustReplica(t, p, "keep", 1<<20, false)
	kd := pattern(1, 1<<20)
	write(t, keep, kd, 0)
	if _, err := p.CreateReplica(ctx, "toobig", ReplicaOptions{Size: capacity}); !errors.Is(err, blockdev.ErrNoSpace) {
		t.Fatalf("thick larger than free: %v", err)
	}
	thin := mustReplica(t, p, "thin", capacity, true)
	var werr error
	n := 0
	for off := int64(0); off < capacity; off += testCS {
		if _, werr = thin.WriteAt(pattern(uint64(off), 4096), off); werr != nil {
			break
		}
		n++
	}
	if !errors.Is(werr, blockdev.ErrNoSpace) || !errors.Is(werr, ErrNoSpace) {
		t.Fatalf("write into full pool: %v", werr)
	}
	if s := p.Stats(); s.Free != 0 {
		t.Fatalf("pool not full: %+v (wrote %d clusters)", s, n)
	}
	check(t, p)
	expect(t, "keep", read(t, keep, 1<<20, 0), kd)
	// Freeing space makes writes work again.
	if err := thin.Unmap(0, 4*testCS); err != nil {
		t.Fatal(err)
	}
	if _, err := thin.WriteAt(make([]byte, 4096), int64(n)*testCS); err != nil {
		t.Fatalf("write after unmap: %v", err)
	}
	check(t, p)
	p = reimport(t, p, dev)
	keep, _ = p.Replica("keep")
	expect(t, "keep after reimport", read(t, keep, 1<<20, 0), kd)
}

func TestResize(t *testing.T) {
	dev := mallocDev(t, 64<<20)
	p := mkPool(t, dev, testCS)
	for _, thin := range []bool{false, true} {
		name := map[bool]string{false: "thick", true: "thin"}[thin]
		r := mustReplica(t, p, name, 1<<20, thin)
		d := pattern(7, 1<<20)
		write(t, r, d, 0)
		if err := p.ResizeReplica(ctx, name, 2<<20); err != nil {
			t.Fatal(err)
		}
		if r.Size() != 2<<20 || !isZero(read(t, r, 1<<20, 1<<20)) {
			t.Fatal("grow")
		}
		expect(t, "after grow", read(t, r, 1<<20, 0), d)
		write(t, r, d, 1<<20)
		// Shrink to a size that is not a cluster multiple, then grow back.
		if err := r.Resize(512<<10 + 4096); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadAt(make([]byte, 4096), 1<<20); !errors.Is(err, blockdev.ErrOutOfRange) {
			t.Fatalf("read past shrunk end: %v", err)
		}
		if err := r.Resize(2 << 20); err != nil {
			t.Fatal(err)
		}
		expect(t, "kept after shrink", read(t, r, 512<<10+4096, 0), d[:512<<10+4096])
		if !isZero(read(t, r, 2<<20-(512<<10+4096), 512<<10+4096)) {
			t.Fatal("data past a shrink reappeared")
		}
		check(t, p)
	}
	if s := p.Stats(); s.UsedClusters != 32+9 {
		t.Fatalf("used clusters %d, want 41", s.UsedClusters)
	}
	if err := p.ResizeReplica(ctx, "thin", 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("resize to 0: %v", err)
	}
	p = reimport(t, p, dev)
}
