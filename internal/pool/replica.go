package pool

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/kura-io/kura/internal/blockdev"
)

// ReplicaOptions describe a replica to create.
type ReplicaOptions struct {
	Size int64 // bytes, a positive multiple of the device block size
	// Thin replicas allocate clusters on first write; thick ones reserve
	// (and zero) all clusters at create.
	Thin bool
	UUID string // empty: random
}

// ReplicaInfo describes a replica or clone.
type ReplicaInfo struct {
	Name           string
	UUID           string
	Size           int64
	Thin           bool
	AllocatedBytes int64 // bytes in clusters this replica owns
	Snapshot       bool
	Clone          bool   // created by CloneSnapshot
	Parent         string // snapshot it reads through to ("" = none)
}

// Replica is a logical volume of a pool. It implements blockdev.Device,
// blockdev.Allocation and blockdev.Resizer. Its lifetime is owned by the
// pool: Close is a no-op, and I/O after DestroyReplica (or after the pool
// is exported or closed) fails with blockdev.ErrClosed.
type Replica struct {
	p *Pool
	v *volume
}

var (
	_ blockdev.Device     = (*Replica)(nil)
	_ blockdev.Allocation = (*Replica)(nil)
	_ blockdev.Resizer    = (*Replica)(nil)
)

func (r *Replica) ReadAt(b []byte, off int64) (int, error)  { return r.p.readVol(r.v, b, off) }
func (r *Replica) WriteAt(b []byte, off int64) (int, error) { return r.p.writeVol(r.v, b, off) }
func (r *Replica) Unmap(off, length int64) error            { return r.p.zeroVol(r.v, off, length) }
func (r *Replica) WriteZeroes(off, length int64) error      { return r.p.zeroVol(r.v, off, length) }
func (r *Replica) Size() int64                              { return r.v.size.Load() }
func (r *Replica) BlockSize() int                           { return r.p.bs }
func (r *Replica) Close() error                             { return nil }

// Flush makes every completed write durable, including the metadata of
// thin first writes (group-committed with other flushes).
func (r *Replica) Flush() error {
	if r.v.destroyed.Load() {
		return ErrClosed
	}
	return r.p.sync(nil)
}

// Allocated reports whether any block of the range may hold data (its
// own clusters or a snapshot's it reads through to).
func (r *Replica) Allocated(off, length int64) (bool, error) {
	return r.p.allocatedVol(r.v, off, length)
}

// Resize changes the replica size (see Pool.ResizeReplica).
func (r *Replica) Resize(newSize int64) error {
	return r.p.ResizeReplica(context.Background(), r.v.uuid.String(), newSize)
}

// Name returns the replica name.
func (r *Replica) Name() string { return r.v.name }

// UUID returns the replica UUID.
func (r *Replica) UUID() string { return r.v.uuid.String() }

// Info describes the replica.
func (r *Replica) Info() ReplicaInfo {
	v := r.v
	i := ReplicaInfo{Name: v.name, UUID: v.uuid.String(), Size: v.size.Load(), Thin: v.thin(),
		AllocatedBytes: v.owned.Load() * r.p.label.ClusterSize, Snapshot: v.snapshot(),
		Clone: v.flags&flagClone != 0 && !v.snapshot()}
	if pv := v.view.Load().parent; pv != nil {
		i.Parent = pv.name
	}
	return i
}

func (p *Pool) checkSize(size int64) error {
	if size <= 0 || size%int64(p.bs) != 0 {
		return fmt.Errorf("%w: size %d must be a positive multiple of %d", ErrInvalidArgument, size, p.bs)
	}
	// Thin replicas may be larger than the pool (overcommit, as in the
	// reference system); thick ones fail later when clusters run out. The
	// bound keeps a replica's cluster map addressable.
	if (size+p.label.ClusterSize-1)/p.label.ClusterSize > maxLogicalClusters {
		return fmt.Errorf("%w: size %d is larger than a replica can be with cluster size %d", ErrInvalidArgument, size, p.label.ClusterSize)
	}
	return nil
}

func parseUUID(s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.New(), nil
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return u, fmt.Errorf("%w: uuid %q: %v", ErrInvalidArgument, s, err)
	}
	return u, nil
}

// checkNewLocked validates a new volume's name and uuid against existing
// ones, the volume limit and the total map size (n logical clusters).
// Caller holds p.mu.
func (p *Pool) checkNewLocked(name string, u uuid.UUID, n uint32) error {
	if err := validName(name, maxNameLen); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	if p.st.names[name] != nil {
		return fmt.Errorf("%w: name %q", ErrExists, name)
	}
	if p.st.uuids[u] != nil {
		return fmt.Errorf("%w: uuid %s", ErrExists, u)
	}
	if uint32(len(p.st.vols)) >= p.st.maxVols {
		return fmt.Errorf("%w: pool holds the maximum of %d replicas and snapshots", ErrNoSpace, p.st.maxVols)
	}
	if !p.st.roomFor(n) {
		return fmt.Errorf("%w: replicas and snapshots would exceed %d logical clusters in total", ErrNoSpace, uint64(maxTotalLogical))
	}
	return nil
}

// runsOf maps logical clusters from..from+len(cl) onto clusters cl.
func runsOf(from uint32, cl []uint32) []mrun {
	var out []mrun
	for i, c := range cl {
		l := from + uint32(i)
		if k := len(out) - 1; k >= 0 && out[k].l+out[k].n == l && out[k].v+out[k].n == c+1 {
			out[k].n++
			continue
		}
		out = append(out, mrun{l, c + 1, 1})
	}
	return out
}

// CreateReplica creates a replica. It is idempotent: the same name with
// the same size, thinness and (if given) UUID returns the existing
// replica; anything else using the name or UUID fails with ErrExists.
// Thick replicas get zeroed clusters for their whole size now.
func (p *Pool) CreateReplica(ctx context.Context, name string, o ReplicaOptions) (*Replica, error) {
	if err := p.checkSize(o.Size); err != nil {
		return nil, err
	}
	u, err := parseUUID(o.UUID)
	if err != nil {
		return nil, err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if err := p.live(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if v := p.st.names[name]; v != nil && !v.snapshot() && v.size.Load() == o.Size && v.thin() == o.Thin &&
		(o.UUID == "" || v.uuid == u) {
		p.mu.Unlock()
		return v.rep, nil
	}
	err = p.checkNewLocked(name, u, p.st.clustersFor(o.Size))
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("pool %s: create replica %q: %w", p.label.Name, name, err)
	}
	v := &volume{name: name, uuid: u, created: time.Now().UnixNano()}
	v.size.Store(o.Size)
	if o.Thin {
		v.flags = flagThin
		return p.createVolume(v, nil, nil, 0)
	}
	p.mu.Lock()
	err = p.needSpareLocked(fmt.Sprintf("thick replica %q", name), int64(p.st.clustersFor(o.Size)))
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	p.allocMu.Lock()
	defer p.allocMu.Unlock()
	cl, ext, f0, err := p.takeFree(int64(p.st.clustersFor(o.Size)), true)
	if err != nil {
		return nil, fmt.Errorf("pool %s: create thick replica %q: %w", p.label.Name, name, err)
	}
	if err := p.zeroClusters(ext); err != nil {
		return nil, err
	}
	return p.createVolume(v, cl, ext, f0)
}

// createVolume logs the creation of v (with clusters cl+ext mapped from
// logical cluster 0) and waits until it is durable.
func (p *Pool) createVolume(v *volume, cl, ext []uint32, f0 uint32) (*Replica, error) {
	p.mu.Lock()
	if n := len(cl) + len(ext); n > 0 {
		if err := p.needSpareLocked(fmt.Sprintf("thick replica %q", v.name), int64(n)); err != nil {
			p.mu.Unlock()
			return nil, err
		}
	}
	v.id = p.st.nextID
	var r []byte
	if len(ext) > 0 {
		r = append(r, recIDs(recFrontier, f0+uint32(len(ext)))...)
	}
	r = append(r, recCreateOf(v)...)
	if all := append(cl, ext...); len(all) > 0 {
		r = append(r, recSetMapOf(v.id, runsOf(0, all))...)
	}
	b, err := p.logLocked(r, len(ext) > 0)
	var rep *Replica
	if err == nil {
		nv := p.st.vols[v.id]
		rep = &Replica{p: p, v: nv}
		nv.rep = rep
	}
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := p.sync(b); err != nil {
		return nil, err
	}
	return rep, nil
}

// findLocked looks a volume up by name or UUID. Caller holds p.mu.
func (p *Pool) findLocked(nameOrUUID string) *volume {
	if v := p.st.names[nameOrUUID]; v != nil {
		return v
	}
	if u, err := uuid.Parse(nameOrUUID); err == nil {
		return p.st.uuids[u]
	}
	return nil
}

func (p *Pool) findReplica(nameOrUUID string) (*volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v := p.findLocked(nameOrUUID); v != nil && !v.snapshot() {
		return v, nil
	}
	return nil, fmt.Errorf("pool %s: replica %q: %w", p.label.Name, nameOrUUID, ErrNotFound)
}

// Replica returns a replica (or clone) by name or UUID.
func (p *Pool) Replica(nameOrUUID string) (*Replica, error) {
	if err := p.live(); err != nil {
		return nil, err
	}
	v, err := p.findReplica(nameOrUUID)
	if err != nil {
		return nil, err
	}
	return v.rep, nil
}

// Replicas lists replicas and clones, sorted by name.
func (p *Pool) Replicas() []*Replica {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Replica
	for _, v := range p.st.vols {
		if !v.snapshot() && v.rep != nil {
			out = append(out, v.rep)
		}
	}
	slices.SortFunc(out, func(a, b *Replica) int { return strings.Compare(a.v.name, b.v.name) })
	return out
}

// DestroyReplica destroys a replica or clone; its clusters are zeroed and
// freed. Snapshots taken of it remain.
func (p *Pool) DestroyReplica(ctx context.Context, nameOrUUID string) error {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if err := p.live(); err != nil {
		return err
	}
	v, err := p.findReplica(nameOrUUID)
	if err != nil {
		return err
	}
	return p.destroyVolume(v)
}

// destroyVolume stops I/O on v, logs its destruction and reclaims its
// clusters. Caller holds adminMu; v has no children.
func (p *Pool) destroyVolume(v *volume) error {
	v.amu.Lock()
	v.destroyed.Store(true)
	v.amu.Unlock()
	p.drain()
	p.mu.Lock()
	b, err := p.logLocked(recIDs(recDestroy, v.id), false)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if err := p.sync(b); err != nil {
		return err
	}
	p.allocMu.Lock()
	defer p.allocMu.Unlock()
	return p.reclaim()
}

// ResizeReplica grows or shrinks a replica. Growing a thick replica
// allocates zeroed clusters; shrinking frees clusters past the new end
// (ErrInUse while first writes to them are in flight). Data past the new
// end is gone, also if the replica grows again later.
func (p *Pool) ResizeReplica(ctx context.Context, nameOrUUID string, newSize int64) error {
	if err := p.checkSize(newSize); err != nil {
		return err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if err := p.live(); err != nil {
		return err
	}
	v, err := p.findReplica(nameOrUUID)
	if err != nil {
		return err
	}
	old := v.size.Load()
	if newSize == old {
		return nil
	}
	on, nn := p.st.clustersFor(old), p.st.clustersFor(newSize)
	var cl, ext []uint32
	var f0 uint32
	if nn > on && !v.thin() {
		p.mu.Lock()
		err := p.needSpareLocked(fmt.Sprintf("growing thick replica %q", v.name), int64(nn-on))
		p.mu.Unlock()
		if err != nil {
			return err
		}
		p.allocMu.Lock()
		defer p.allocMu.Unlock()
		if cl, ext, f0, err = p.takeFree(int64(nn-on), true); err != nil {
			return fmt.Errorf("pool %s: grow replica %s: %w", p.label.Name, v.name, err)
		}
		if err := p.zeroClusters(ext); err != nil {
			return err
		}
	}
	if cs := p.label.ClusterSize; newSize < old && newSize%cs != 0 {
		// The tail of the new last cluster must read zeros if it grows again.
		if err := p.zeroVol(v, newSize, min(old, int64(nn)*cs)-newSize); err != nil {
			return err
		}
	}
	p.mu.Lock()
	if nn > on && !p.st.roomFor(nn-on) {
		p.mu.Unlock()
		return fmt.Errorf("pool %s: grow replica %s: replicas and snapshots would exceed %d logical clusters in total: %w", p.label.Name, v.name, uint64(maxTotalLogical), ErrNoSpace)
	}
	if n := len(cl) + len(ext); n > 0 {
		if err := p.needSpareLocked(fmt.Sprintf("growing thick replica %q", v.name), int64(n)); err != nil {
			p.mu.Unlock()
			return err
		}
	}
	v.amu.Lock()
	for l := range v.pending {
		if l >= nn {
			v.amu.Unlock()
			p.mu.Unlock()
			return fmt.Errorf("pool %s: shrink replica %s: first writes in flight past the new end: %w", p.label.Name, v.name, ErrInUse)
		}
	}
	var r []byte
	if len(ext) > 0 {
		r = append(r, recIDs(recFrontier, f0+uint32(len(ext)))...)
	}
	r = append(r, recResizeOf(v.id, newSize)...)
	if all := append(cl, ext...); len(all) > 0 {
		r = append(r, recSetMapOf(v.id, runsOf(on, all))...)
	}
	b, err := p.logLocked(r, len(ext) > 0)
	v.amu.Unlock()
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if err := p.sync(b); err != nil {
		return err
	}
	if nn < on {
		p.allocMu.Lock()
		defer p.allocMu.Unlock()
		return p.reclaim()
	}
	return nil
}
