package pool

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/kura-io/kura/internal/blockdev"
)

// CreateOptions configure a new pool.
type CreateOptions struct {
	// ClusterSize is the allocation unit in bytes: a multiple of 64 KiB in
	// [64 KiB, 1 GiB]. Zero means 4 MiB.
	ClusterSize int64
	// UUID of the pool; empty means a random one.
	UUID string
}

// Stats is a snapshot of a pool's space usage. Shared clusters do not
// exist (each cluster has one owner), so nothing is counted twice.
type Stats struct {
	Capacity     int64 // bytes in data clusters
	Used         int64 // bytes in clusters owned by replicas and snapshots
	Free         int64 // Capacity - Used
	ClusterSize  int64
	Clusters     int64 // total data clusters
	UsedClusters int64
	Replicas     int
	Snapshots    int
}

// Pool is an imported pool. All methods are safe for concurrent use.
type Pool struct {
	dev   blockdev.Device
	label Label // immutable after open, except State (under adminMu)
	uuid  uuid.UUID
	bs    int

	// adminMu serializes metadata operations (replica/snapshot lifecycle,
	// export, check).
	adminMu sync.Mutex
	// allocMu serializes taking clusters from free space (window refill,
	// thick allocation, reclaim) and guards hint.
	allocMu sync.Mutex
	hint    uint32

	// mu guards st, avail and the order in which records enter the
	// journal (records are applied and queued under mu).
	mu    sync.Mutex
	st    *state
	avail []uint32 // window clusters not yet handed to a first write

	// cm guards cmt. gen and pos are touched only by the commit leader
	// (cmt.busy) or single-threaded open.
	cm  sync.Mutex
	cmt commitState
	gen uint64
	pos uint32

	gate   atomic.Pointer[ioGate]
	closed atomic.Bool
	bufs   sync.Pool // cluster-sized buffers for copy-on-write

	async blockdev.Async // dev, when it can start I/O asynchronously (async.go)
	ops   sync.Pool      // *asyncOp
}

func newPool(dev blockdev.Device, l Label, st *state) *Pool {
	p := &Pool{dev: dev, label: l, uuid: mustUUID(l.UUID), bs: dev.BlockSize(), st: st}
	p.cmt.cur = newBatch()
	p.gate.Store(newGate())
	p.bufs.New = func() any { b := make([]byte, l.ClusterSize); return &b }
	p.async, _ = dev.(blockdev.Async)
	p.ops.New = func() any { return &asyncOp{p: p} }
	return p
}

func mustUUID(s string) uuid.UUID {
	u, err := uuid.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// Create makes a new pool on dev. It refuses a device holding a pool
// label (ErrAlreadyPool), also a damaged one, and writes nothing when
// validation fails.
func Create(ctx context.Context, dev blockdev.Device, name string, opts CreateOptions) (*Pool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validName(name, maxPoolNameLen); err != nil {
		return nil, fmt.Errorf("%w: pool %v", ErrInvalidArgument, err)
	}
	cs := opts.ClusterSize
	if cs == 0 {
		cs = DefaultClusterSize
	}
	if err := checkClusterSize(cs); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	u := uuid.New()
	if opts.UUID != "" {
		var err error
		if u, err = uuid.Parse(opts.UUID); err != nil {
			return nil, fmt.Errorf("%w: pool uuid %q: %v", ErrInvalidArgument, opts.UUID, err)
		}
	}
	if bs := dev.BlockSize(); bs != 512 && bs != 4096 {
		return nil, fmt.Errorf("%w: device block size %d", ErrInvalidArgument, bs)
	}
	l, err := layout(dev.Size(), dev.BlockSize(), cs)
	if err != nil {
		return nil, err
	}
	l.Name, l.UUID = name, u.String()
	switch old, _, err := readLabels(dev); {
	case err == nil:
		return nil, fmt.Errorf("%w: pool %q (%s)", ErrAlreadyPool, old.Name, old.UUID)
	case errors.Is(err, ErrCorrupt):
		return nil, fmt.Errorf("%w: damaged pool label present (%v); wipe the device first", ErrAlreadyPool, err)
	case !errors.Is(err, ErrNotAPool):
		return nil, err
	}
	p := newPool(dev, l, newState(&l))
	// A random starting generation keeps stale metadata of an earlier
	// pool with the same UUID from ever matching.
	var rb [8]byte
	_, _ = rand.Read(rb[:])
	p.gen = binary.LittleEndian.Uint64(rb[:])>>2 | 1<<32
	zero := make([]byte, labelSize)
	for _, off := range []int64{l.SlotOffset, l.SlotOffset + l.SlotSize, l.JournalOff} {
		if _, err := dev.WriteAt(zero, off); err != nil {
			return nil, fmt.Errorf("pool %s: create: %w", name, err)
		}
	}
	if err := p.writeCheckpoint(encodeState(p.st)); err != nil {
		return nil, fmt.Errorf("pool %s: create: %w", name, err)
	}
	if err := p.writeLabels(StateActive); err != nil {
		return nil, fmt.Errorf("pool %s: create: %w", name, err)
	}
	return p, nil
}

// writeLabels writes the backup then the primary label, flushing after each.
func (p *Pool) writeLabels(s State) error {
	l := p.label
	l.State = s
	b := encodeLabel(&l)
	for _, off := range []int64{l.backupOffset(), 0} {
		if _, err := p.dev.WriteAt(b, off); err != nil {
			return err
		}
		if err := p.dev.Flush(); err != nil {
			return err
		}
	}
	p.label.State = s
	return nil
}

// Import opens the pool on dev: it verifies the label and metadata, replays
// the journal, zeroes clusters left reserved or freed by an interrupted
// operation, writes a fresh checkpoint and marks the pool active. Nothing
// is written when verification fails (ErrNotAPool, ErrCorrupt).
func Import(ctx context.Context, dev blockdev.Device) (*Pool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l, repair, err := readLabels(dev)
	if err != nil {
		return nil, err
	}
	if dev.Size() < l.DeviceSize {
		return nil, fmt.Errorf("%w: pool %s: device is %d bytes, label says %d", ErrCorrupt, l.Name, dev.Size(), l.DeviceSize)
	}
	if dev.BlockSize() != l.BlockSize {
		return nil, fmt.Errorf("%w: pool %s: device block size %d, pool created with %d", ErrInvalidArgument, l.Name, dev.BlockSize(), l.BlockSize)
	}
	st, gen, pos, err := loadState(dev, &l)
	if err == nil {
		err = st.verify()
	}
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", l.Name, err)
	}
	p := newPool(dev, l, st)
	p.gen, p.pos = gen, pos
	for _, v := range st.vols {
		if v.snapshot() {
			v.snap = &Snapshot{p: p, v: v}
		} else {
			v.rep = &Replica{p: p, v: v}
		}
	}
	if err := p.recover(); err != nil {
		return nil, fmt.Errorf("pool %s: recovery: %w", l.Name, err)
	}
	if repair || l.State != StateActive {
		if err := p.writeLabels(StateActive); err != nil {
			return nil, fmt.Errorf("pool %s: write label: %w", l.Name, err)
		}
	}
	return p, nil
}

// recover zeroes window and dirty clusters (they may hold data of a first
// write or of a freed volume whose metadata never committed), frees them,
// and writes a checkpoint.
func (p *Pool) recover() error {
	var cl []uint32
	cl = append(cl, sortedKeys(p.st.dirty)...)
	cl = append(cl, sortedKeys(p.st.window)...)
	if err := p.zeroClusters(cl); err != nil {
		return err
	}
	for _, c := range cl {
		p.st.used.clr(c)
	}
	clear(p.st.dirty)
	clear(p.st.window)
	return p.writeCheckpoint(encodeState(p.st))
}

// Name returns the pool name.
func (p *Pool) Name() string { return p.label.Name }

// UUID returns the pool UUID.
func (p *Pool) UUID() string { return p.label.UUID }

// Label returns the pool's label as last written.
func (p *Pool) Label() Label {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	return p.label
}

// Stats reports space usage.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{ClusterSize: p.label.ClusterSize, Clusters: p.label.Clusters, UsedClusters: p.st.mapped}
	s.Capacity = s.Clusters * s.ClusterSize
	s.Used = s.UsedClusters * s.ClusterSize
	s.Free = s.Capacity - s.Used
	for _, v := range p.st.vols {
		if v.snapshot() {
			s.Snapshots++
		} else {
			s.Replicas++
		}
	}
	return s
}

func (p *Pool) live() error {
	if p.closed.Load() {
		return fmt.Errorf("pool %s: %w", p.label.Name, ErrClosed)
	}
	return p.failedErr()
}

// shutdown stops I/O on every volume and writes a final checkpoint.
func (p *Pool) shutdown() error {
	p.closed.Store(true)
	p.mu.Lock()
	for _, v := range p.st.vols {
		v.destroyed.Store(true)
	}
	p.mu.Unlock()
	p.drain()
	return p.syncBatch(nil, true)
}

// Export flushes, writes a final checkpoint, marks the pool cleanly
// exported and closes it; another engine may then Import it.
func (p *Pool) Export(ctx context.Context) error {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if err := p.live(); err != nil {
		return err
	}
	if err := p.shutdown(); err != nil {
		return err
	}
	return p.writeLabels(StateExported)
}

// Close flushes and closes the pool without marking it exported.
func (p *Pool) Close() error {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if p.closed.Load() {
		return nil
	}
	return p.shutdown()
}

// Destroy destroys every replica and snapshot and wipes both labels and
// the metadata headers, so the device no longer holds a pool. Data
// clusters are not zeroed (a new pool zeroes clusters before first use).
func (p *Pool) Destroy(ctx context.Context) error {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if err := p.live(); err != nil {
		return err
	}
	if err := p.shutdown(); err != nil {
		return err
	}
	zero := make([]byte, labelSize)
	l := &p.label
	for _, off := range []int64{0, l.backupOffset(), l.SlotOffset, l.SlotOffset + l.SlotSize, l.JournalOff} {
		if _, err := p.dev.WriteAt(zero, off); err != nil {
			return fmt.Errorf("pool %s: destroy: %w", l.Name, err)
		}
	}
	return p.dev.Flush()
}
