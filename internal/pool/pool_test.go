package pool

import (
	"bytes"
	"errors"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

func TestCreateImportExportDestroy(t *testing.T) {
	dev := mallocDev(t, 64<<20)
	p := mkPool(t, dev, testCS)
	thick := mustReplica(t, p, "thick", 4<<20, false)
	thin := mustReplica(t, p, "thin", 8<<20, true)
	a, b := pattern(1, 256<<10), pattern(2, 8192)
	write(t, thick, a, 128<<10)
	write(t, thin, b, 1<<20)
	if err := thin.Flush(); err != nil {
		t.Fatal(err)
	}
	check(t, p)
	if err := p.Export(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := thick.ReadAt(make([]byte, 4096), 0); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("read after export: %v", err)
	}
	l, err := Probe(ctx, dev)
	if err != nil || l.State != StateExported || l.Name != "p1" || l.UUID != p.UUID() || l.ClusterSize != testCS {
		t.Fatalf("probe: %+v %v", l, err)
	}
	q, err := Import(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	check(t, q)
	if l, _ := Probe(ctx, dev); l.State != StateActive {
		t.Fatalf("state after import %v", l.State)
	}
	r1, err := q.Replica("thick")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := q.Replica(thin.UUID())
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "thick", read(t, r1, len(a), 128<<10), a)
	expect(t, "thin", read(t, r2, len(b), 1<<20), b)
	if !isZero(read(t, r2, 4096, 0)) {
		t.Fatal("unwritten thin block not zero")
	}
	if i := r2.Info(); !i.Thin || i.AllocatedBytes != testCS || i.Size != 8<<20 {
		t.Fatalf("thin info %+v", i)
	}
	if i := r1.Info(); i.Thin || i.AllocatedBytes != 4<<20 {
		t.Fatalf("thick info %+v", i)
	}
	if err := q.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Probe(ctx, dev); !errors.Is(err, ErrNotAPool) {
		t.Fatalf("probe after destroy: %v", err)
	}
	if _, err := Import(ctx, dev); !errors.Is(err, ErrNotAPool) {
		t.Fatalf("import after destroy: %v", err)
	}
	// The device can hold a new pool again.
	p2 := mkPool(t, dev, testCS)
	if len(p2.Replicas()) != 0 {
		t.Fatal("new pool has replicas")
	}
}

func TestCreateValidation(t *testing.T) {
	dev := mallocDev(t, 16<<20)
	bad := []struct {
		name string
		o    CreateOptions
	}{
		{"", CreateOptions{}},
		{"p", CreateOptions{ClusterSize: 1000}},
		{"p", CreateOptions{ClusterSize: 2 << 30}},
		{"p", CreateOptions{UUID: "nope"}},
		{"p", CreateOptions{ClusterSize: 16 << 20}}, // device too small
	}
	for _, c := range bad {
		if _, err := Create(ctx, dev, c.name, c.o); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Create(%q, %+v) = %v, want ErrInvalidArgument", c.name, c.o, err)
		}
	}
	if ok, _ := dev.Allocated(0, dev.Size()); ok {
		t.Fatal("failed Create wrote to the device")
	}
	p := mkPool(t, dev, testCS)
	if _, err := Create(ctx, dev, "again", CreateOptions{ClusterSize: testCS}); !errors.Is(err, ErrAlreadyPool) || !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v", err)
	}
	if p.Stats().Clusters < 100 {
		t.Fatalf("stats %+v", p.Stats())
	}
}

func TestImportCorruptLabel(t *testing.T) {
	dev := mallocDev(t, 32<<20)
	if _, err := Import(ctx, dev); !errors.Is(err, ErrNotAPool) {
		t.Fatalf("blank import: %v", err)
	}
	p := mkPool(t, dev, testCS)
	r := mustReplica(t, p, "r", 1<<20, false)
	data := pattern(3, 4096)
	write(t, r, data, 0)
	if err := p.Export(ctx); err != nil {
		t.Fatal(err)
	}
	flip := func(off int64) {
		b := read(t, dev, 4096, off)
		b[100] ^= 0xff
		write(t, dev, b, off)
	}
	// A damaged primary falls back to the backup and is repaired.
	flip(0)
	q, err := Import(ctx, dev)
	if err != nil {
		t.Fatalf("import with damaged primary: %v", err)
	}
	r2, _ := q.Replica("r")
	expect(t, "data", read(t, r2, 4096, 0), data)
	if err := q.Export(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeLabel(read(t, dev, 4096, 0)); err != nil {
		t.Fatalf("primary not repaired: %v", err)
	}
	// Both damaged: ErrCorrupt, and nothing changes.
	l, _ := Probe(ctx, dev)
	flip(0)
	flip(l.backupOffset())
	before := read(t, dev, int(dev.Size()), 0)
	if _, err := Import(ctx, dev); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("import with both labels damaged: %v", err)
	}
	if _, err := Probe(ctx, dev); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("probe with both labels damaged: %v", err)
	}
	if _, err := Create(ctx, dev, "x", CreateOptions{}); !errors.Is(err, ErrAlreadyPool) {
		t.Fatalf("create over damaged label: %v", err)
	}
	if !bytes.Equal(before, read(t, dev, int(dev.Size()), 0)) {
		t.Fatal("failed import changed the device")
	}
}

func TestCorruptCheckpoint(t *testing.T) {
	dev := mallocDev(t, 32<<20)
	p := mkPool(t, dev, testCS)
	mustReplica(t, p, "r", 1<<20, true)
	if err := p.Export(ctx); err != nil {
		t.Fatal(err)
	}
	l, _ := Probe(ctx, dev)
	// Damage both slots: no valid checkpoint.
	for s := int64(0); s < 2; s++ {
		b := read(t, dev, 4096, l.SlotOffset+s*l.SlotSize)
		b[ckptHdrLen+1] ^= 1
		write(t, dev, b, l.SlotOffset+s*l.SlotSize)
	}
	if _, err := Import(ctx, dev); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("import: %v", err)
	}
}

func TestReplicaLifecycle(t *testing.T) {
	dev := mallocDev(t, 64<<20)
	p := mkPool(t, dev, testCS)
	r := mustReplica(t, p, "r", 1<<20, true)
	if r2, err := p.CreateReplica(ctx, "r", ReplicaOptions{Size: 1 << 20, Thin: true}); err != nil || r2 != r {
		t.Fatalf("idempotent create: %v", err)
	}
	if _, err := p.CreateReplica(ctx, "r", ReplicaOptions{Size: 2 << 20, Thin: true}); !errors.Is(err, ErrExists) {
		t.Fatalf("create with other size: %v", err)
	}
	if _, err := p.CreateReplica(ctx, "other", ReplicaOptions{Size: 1 << 20, UUID: r.UUID()}); !errors.Is(err, ErrExists) {
		t.Fatalf("create with taken uuid: %v", err)
	}
	for _, o := range []ReplicaOptions{{Size: 0}, {Size: 1000}, {Size: 1 << 20, UUID: "x"}} {
		if _, err := p.CreateReplica(ctx, "bad", o); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("create %+v: %v", o, err)
		}
	}
	if _, err := p.CreateReplica(ctx, "", ReplicaOptions{Size: 4096}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty name: %v", err)
	}
	if _, err := p.CreateReplica(ctx, "huge", ReplicaOptions{Size: 1 << 40}); !errors.Is(err, blockdev.ErrNoSpace) {
		t.Fatalf("huge thick: %v", err)
	}
	// Thin replicas may overcommit the pool (the seed's 1 GiB thin replica
	// on a 96 MiB pool); the space runs out on write instead.
	if _, err := p.CreateReplica(ctx, "hugethin", ReplicaOptions{Size: 1 << 40, Thin: true}); err != nil {
		t.Fatalf("huge thin: %v", err)
	}
	if err := p.DestroyReplica(ctx, "hugethin"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Replica("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup: %v", err)
	}
	write(t, r, pattern(1, 4096), 0)
	if err := p.DestroyReplica(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteAt(make([]byte, 4096), 0); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("write after destroy: %v", err)
	}
	if err := p.DestroyReplica(ctx, "r"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second destroy: %v", err)
	}
	if s := p.Stats(); s.Used != 0 || s.Replicas != 0 {
		t.Fatalf("stats after destroy %+v", s)
	}
	check(t, p)
}
