package pool

import "testing"

// TestHotPathNoAlloc checks that reads and writes of allocated clusters,
// on thick, thin and clone replicas, allocate nothing.
func TestHotPathNoAlloc(t *testing.T) {
	dev := mallocDev(t, 64<<20)
	p := mkPool(t, dev, testCS)
	thick := mustReplica(t, p, "thick", 1<<20, false)
	thin := mustReplica(t, p, "thin", 1<<20, true)
	write(t, thin, make([]byte, 1<<20), 0)
	if _, err := p.CreateSnapshot(ctx, "thin", "s", ""); err != nil {
		t.Fatal(err)
	}
	clone, err := p.CloneSnapshot(ctx, "s", "c", "")
	if err != nil {
		t.Fatal(err)
	}
	write(t, clone, make([]byte, testCS), 0)
	buf := make([]byte, 4096)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"thick write", func() { thick.WriteAt(buf, 8192) }},
		{"thick read", func() { thick.ReadAt(buf, 8192) }},
		{"clone write (owned)", func() { clone.WriteAt(buf, 4096) }},
		{"clone read (through)", func() { clone.ReadAt(buf, 3*testCS) }},
	} {
		if n := testing.AllocsPerRun(200, c.f); n != 0 {
			t.Errorf("%s: %.1f allocations per I/O", c.name, n)
		}
	}
}
