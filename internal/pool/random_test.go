package pool

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/testtool"
)

// randomModel tracks what every volume must read.
type randomModel struct {
	vols  map[string][]byte // replicas and clones
	snaps map[string][]byte
}

func (m *randomModel) pick(r *rand.Rand, set map[string][]byte) string {
	if len(set) == 0 {
		return ""
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys[r.IntN(len(keys))]
}

func (m *randomModel) verifyAll(t *testing.T, p *Pool) {
	t.Helper()
	for name, want := range m.vols {
		r, err := p.Replica(name)
		if err != nil {
			t.Fatal(err)
		}
		expect(t, "replica "+name, read(t, r, len(want), 0), want)
	}
	for name, want := range m.snaps {
		s, err := p.Snapshot(name)
		if err != nil {
			t.Fatal(err)
		}
		expect(t, "snapshot "+name, read(t, s, len(want), 0), want)
	}
	if len(p.Replicas()) != len(m.vols) || len(p.Snapshots()) != len(m.snaps) {
		t.Fatalf("pool has %d replicas, %d snapshots; model %d, %d", len(p.Replicas()), len(p.Snapshots()), len(m.vols), len(m.snaps))
	}
}

// TestRandomOps runs random write/read/unmap/snapshot/clone/destroy/
// resize/reimport sequences against an in-memory model.
func TestRandomOps(t *testing.T) {
	ops := 1500
	if testtool.Long() {
		ops = 20000
	}
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { randomOps(t, seed, ops) })
	}
}

func randomOps(t *testing.T, seed uint64, ops int) {
	r := rand.New(rand.NewPCG(seed, 77))
	dev := mallocDev(t, 48<<20)
	p := mkPool(t, dev, testCS)
	m := &randomModel{vols: map[string][]byte{}, snaps: map[string][]byte{}}
	const bs = 4096
	next := 0
	name := func(prefix string) string { next++; return fmt.Sprint(prefix, next) }
	counts := map[string]int{}
	defer func() { t.Logf("ops done: %v", counts) }()
	for i := 0; i < ops; i++ {
		op := r.IntN(100)
		counts[[]string{"create", "write", "unmap", "read", "snapshot", "clone", "destroy", "destroysnap", "resize", "flush", "check", "reimport"}[opKind(op, len(m.vols))]]++
		switch {
		case op < 5 || len(m.vols) == 0:
			if len(m.vols) >= 6 {
				continue
			}
			n := name("r")
			size := int64(1+r.IntN(16)) * testCS / 2
			if _, err := p.CreateReplica(ctx, n, ReplicaOptions{Size: size, Thin: r.IntN(3) > 0}); err != nil {
				if errors.Is(err, ErrNoSpace) {
					continue
				}
				t.Fatal(err)
			}
			m.vols[n] = make([]byte, size)
		case op < 45: // write
			n := m.pick(r, m.vols)
			want := m.vols[n]
			blocks := len(want) / bs
			off := r.IntN(blocks)
			cnt := 1 + r.IntN(min(40, blocks-off))
			d := pattern(r.Uint64(), cnt*bs)
			rep, _ := p.Replica(n)
			if _, err := rep.WriteAt(d, int64(off*bs)); err != nil {
				if errors.Is(err, ErrNoSpace) {
					continue // partial writes are allowed to have happened
				}
				t.Fatal(err)
			}
			copy(want[off*bs:], d)
		case op < 55: // unmap / write zeroes
			n := m.pick(r, m.vols)
			want := m.vols[n]
			blocks := len(want) / bs
			off := r.IntN(blocks)
			cnt := 1 + r.IntN(blocks-off)
			rep, _ := p.Replica(n)
			f := rep.Unmap
			if r.IntN(2) == 0 {
				f = rep.WriteZeroes
			}
			if err := f(int64(off*bs), int64(cnt*bs)); err != nil {
				if errors.Is(err, ErrNoSpace) {
					continue
				}
				t.Fatal(err)
			}
			clear(want[off*bs : (off+cnt)*bs])
		case op < 70: // read-verify
			if r.IntN(2) == 0 || len(m.snaps) == 0 {
				n := m.pick(r, m.vols)
				rep, _ := p.Replica(n)
				expect(t, "read "+n, read(t, rep, len(m.vols[n]), 0), m.vols[n])
			} else {
				n := m.pick(r, m.snaps)
				s, _ := p.Snapshot(n)
				expect(t, "read "+n, read(t, s, len(m.snaps[n]), 0), m.snaps[n])
			}
		case op < 77:
			if len(m.snaps) >= 12 {
				continue
			}
			src, sn := m.pick(r, m.vols), name("s")
			if _, err := p.CreateSnapshot(ctx, src, sn, ""); err != nil {
				t.Fatal(err)
			}
			m.snaps[sn] = slices.Clone(m.vols[src])
		case op < 83:
			if len(m.snaps) == 0 || len(m.vols) >= 8 {
				continue
			}
			sn, cn := m.pick(r, m.snaps), name("c")
			if _, err := p.CloneSnapshot(ctx, sn, cn, ""); err != nil {
				t.Fatal(err)
			}
			m.vols[cn] = slices.Clone(m.snaps[sn])
		case op < 87:
			n := m.pick(r, m.vols)
			if err := p.DestroyReplica(ctx, n); err != nil {
				t.Fatal(err)
			}
			delete(m.vols, n)
		case op < 91:
			n := m.pick(r, m.snaps)
			if n == "" {
				continue
			}
			err := p.DestroySnapshot(ctx, n, r.IntN(2) == 0)
			if errors.Is(err, ErrHasDependents) || errors.Is(err, ErrNoSpace) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			delete(m.snaps, n)
		case op < 94:
			n := m.pick(r, m.vols)
			size := int64(1+r.IntN(16)) * testCS / 2
			err := p.ResizeReplica(ctx, n, size)
			if errors.Is(err, ErrNoSpace) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			old := m.vols[n]
			nw := make([]byte, size)
			copy(nw, old)
			m.vols[n] = nw
		case op < 97:
			n := m.pick(r, m.vols)
			rep, _ := p.Replica(n)
			if err := rep.Flush(); err != nil {
				t.Fatal(err)
			}
		case op < 98:
			check(t, p)
		default:
			p = reimport(t, p, dev)
			m.verifyAll(t, p)
		}
	}
	check(t, p)
	m.verifyAll(t, p)
	p = reimport(t, p, dev)
	m.verifyAll(t, p)
}

func opKind(op, nvols int) int {
	if op < 5 || nvols == 0 {
		return 0
	}
	for i, lim := range []int{45, 55, 70, 77, 83, 87, 91, 94, 97, 98} {
		if op < lim {
			return i + 1
		}
	}
	return 11
}

// TestConcurrentIOAndSnapshots writes disjoint ranges from several
// goroutines while snapshots are taken; every acknowledged write must be
// in the replica, and each snapshot must hold, per block, either the
// value before or after any write that raced it (never garbage).
func TestConcurrentIOAndSnapshots(t *testing.T) {
	dev := mallocDev(t, 64<<20)
	p := mkPool(t, dev, testCS)
	const workers, per = 8, 32 // blocks per worker
	rep := mustReplica(t, p, "r", workers*per*4096, true)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	final := make([][]byte, workers)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			cur := make([]byte, per*4096)
			for i := 0; ; i++ {
				select {
				case <-stop:
					final[w] = cur
					return
				default:
				}
				b := r.IntN(per)
				d := pattern(uint64(w<<20|i), 4096)
				if _, err := rep.WriteAt(d, int64((w*per+b)*4096)); err != nil {
					t.Error(err)
					final[w] = cur
					return
				}
				copy(cur[b*4096:], d)
				if i%7 == 0 {
					if err := rep.Unmap(int64((w*per+b)*4096), 4096); err != nil {
						t.Error(err)
					}
					clear(cur[b*4096 : (b+1)*4096])
				}
			}
		})
	}
	for i := 0; i < 20; i++ {
		time.Sleep(2 * time.Millisecond) // let writers run between snapshots
		if _, err := p.CreateSnapshot(ctx, "r", fmt.Sprint("s", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Millisecond)
	close(stop)
	wg.Wait()
	for w := range workers {
		expect(t, fmt.Sprint("worker ", w), read(t, rep, per*4096, int64(w*per*4096)), final[w])
	}
	check(t, p)
	p = reimport(t, p, dev)
	rep, _ = p.Replica("r")
	for w := range workers {
		expect(t, fmt.Sprint("worker ", w, " after reimport"), read(t, rep, per*4096, int64(w*per*4096)), final[w])
	}
	var _ blockdev.Device = rep
}
