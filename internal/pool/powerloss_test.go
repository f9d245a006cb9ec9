package pool

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/testtool"
)

// crashDev is an in-memory device with a volatile write cache: writes
// since the last Flush may be lost, reordered or partially applied (per
// 4 KiB block) by a power loss. After trip device calls it loses power:
// it captures the crash image and fails every later call with ErrIO.
type crashDev struct {
	mu      sync.Mutex // guards all fields
	cur     []byte     // what reads see
	durable []byte     // what survives a power loss for sure
	pend    []pwrite   // completed since the last Flush
	ops     int
	trip    int // 0: never
	r       *rand.Rand
	image   []byte // the crash image, once tripped
}

type pwrite struct {
	off  int64
	data []byte
}

func newCrashDev(img []byte, seed uint64) *crashDev {
	return &crashDev{cur: slices.Clone(img), durable: slices.Clone(img), r: rand.New(rand.NewPCG(seed, 11))}
}

func (d *crashDev) step() error {
	if d.image != nil {
		return blockdev.ErrIO
	}
	d.ops++
	if d.trip != 0 && d.ops >= d.trip {
		img := slices.Clone(d.durable)
		for _, i := range d.r.Perm(len(d.pend)) {
			w := d.pend[i]
			for b := 0; b < len(w.data); b += 4096 {
				if d.r.IntN(2) == 0 {
					copy(img[w.off+int64(b):], w.data[b:min(b+4096, len(w.data))])
				}
			}
		}
		d.image = img
		return blockdev.ErrIO
	}
	return nil
}

func (d *crashDev) ReadAt(p []byte, off int64) (int, error) {
	if err := blockdev.CheckRange(off, int64(len(p)), 4096, d.Size()); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.image != nil {
		return 0, blockdev.ErrIO
	}
	copy(p, d.cur[off:])
	return len(p), nil
}

func (d *crashDev) write(p []byte, off int64) error {
	if err := blockdev.CheckRange(off, int64(len(p)), 4096, d.Size()); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.step(); err != nil {
		return err
	}
	copy(d.cur[off:], p)
	d.pend = append(d.pend, pwrite{off, slices.Clone(p)})
	return nil
}

func (d *crashDev) WriteAt(p []byte, off int64) (int, error) {
	if err := d.write(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (d *crashDev) WriteZeroes(off, n int64) error { return d.write(make([]byte, n), off) }
func (d *crashDev) Unmap(off, n int64) error       { return d.WriteZeroes(off, n) }
func (d *crashDev) Size() int64                    { return int64(len(d.cur)) }
func (d *crashDev) BlockSize() int                 { return 4096 }
func (d *crashDev) Close() error                   { return nil }

func (d *crashDev) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.step(); err != nil {
		return err
	}
	for _, w := range d.pend {
		copy(d.durable[w.off:], w.data)
	}
	d.pend = nil
	return nil
}

// TestPowerLoss runs random operations on a pool whose device loses
// power after a random number of device calls (losing, reordering and
// tearing unflushed writes), then imports the crash image and checks
// every acknowledged operation — crashes land inside metadata commits,
// copy-on-writes, reclaims and checkpoints, not only between operations.
func TestPowerLoss(t *testing.T) {
	cycles := 100
	if testtool.Long() {
		cycles = 2000
	}
	m := mallocDev(t, 8<<20)
	p := mkPool(t, m, testCS)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	img := read(t, m, int(m.Size()), 0)
	model := map[string]*cvol{}
	r := rand.New(rand.NewPCG(42, 1))
	var ops int
	for cycle := 1; cycle <= cycles; cycle++ {
		dev := newCrashDev(img, r.Uint64())
		p, err := Import(ctx, dev)
		if err != nil {
			t.Fatalf("cycle %d: import: %v", cycle, err)
		}
		// Power fails somewhere in the next few hundred device calls.
		dev.mu.Lock()
		dev.trip = dev.ops + 1 + r.IntN(300)
		dev.mu.Unlock()
		var lines []string
		say := func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }
		crashOps(p, uint64(cycle), say, func() bool {
			dev.mu.Lock()
			defer dev.mu.Unlock()
			return dev.image != nil
		})
		ops += len(lines)
		meta := applyReport(t, model, lines, true)
		after := newCrashDev(dev.image, r.Uint64())
		q, err := Import(ctx, after)
		if err != nil {
			t.Fatalf("cycle %d: import after power loss: %v", cycle, err)
		}
		verifyCrash(t, q, model, meta, cycle)
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		img = after.cur
	}
	t.Logf("%d power losses, %d reported operations", cycles, ops)
}
