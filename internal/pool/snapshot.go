package pool

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// Snapshot is a read-only, point-in-time image of a replica. It
// implements blockdev.Device (writes fail with blockdev.ErrReadOnly).
type Snapshot struct {
	p *Pool
	v *volume
}

var _ blockdev.Device = (*Snapshot)(nil)

// SnapshotInfo describes a snapshot.
type SnapshotInfo struct {
	Name       string
	UUID       string
	Source     string // name of the replica it was taken of ("" once destroyed)
	SourceUUID string
	Parent     string // older snapshot it reads through to ("" = none)
	Created    time.Time
	Size       int64
	// ReferencedBytes is the data visible in the snapshot (its clusters
	// and those of older snapshots it reads through to).
	ReferencedBytes int64
	// ExclusiveBytes is what destroying the snapshot would free: its
	// clusters that no dependent reads through to.
	ExclusiveBytes int64
	Clones         []string // clones created from it
}

func (s *Snapshot) ReadAt(b []byte, off int64) (int, error) { return s.p.readVol(s.v, b, off) }
func (s *Snapshot) WriteAt([]byte, int64) (int, error)      { return 0, blockdev.ErrReadOnly }
func (s *Snapshot) Unmap(int64, int64) error                { return blockdev.ErrReadOnly }
func (s *Snapshot) WriteZeroes(int64, int64) error          { return blockdev.ErrReadOnly }
func (s *Snapshot) Size() int64                             { return s.v.size.Load() }
func (s *Snapshot) BlockSize() int                          { return s.p.bs }
func (s *Snapshot) Close() error                            { return nil }
func (s *Snapshot) Name() string                            { return s.v.name }
func (s *Snapshot) UUID() string                            { return s.v.uuid.String() }

// Flush is a no-op beyond checking the snapshot still exists.
func (s *Snapshot) Flush() error {
	if s.v.destroyed.Load() {
		return ErrClosed
	}
	return nil
}

// Allocated reports whether any block of the range holds data.
func (s *Snapshot) Allocated(off, length int64) (bool, error) {
	return s.p.allocatedVol(s.v, off, length)
}

// Info describes the snapshot.
func (s *Snapshot) Info() SnapshotInfo {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return s.p.snapInfoLocked(s.v)
}

// freeze blocks new writes to v and waits for in-flight I/O, so that a
// map switch cannot race a write that looked up the old map. The
// returned function unfreezes. Caller is not inside the gate.
func (p *Pool) freeze(v *volume) func() {
	ch := make(chan struct{})
	v.frozen.Store(&ch)
	p.drain()
	return func() {
		v.frozen.Store(nil)
		close(ch)
	}
}

// waitFrozen parks a writer of v while a snapshot switches v's map.
func (p *Pool) waitFrozen(g *gateRef, v *volume) {
	for {
		ch := v.frozen.Load()
		if ch == nil {
			return
		}
		g.exit()
		<-*ch
		*g = p.enter()
	}
}

// CreateSnapshot takes a crash-consistent snapshot of a replica in O(1):
// the replica's cluster map becomes the snapshot's, and the replica gets
// an empty map that reads through to the snapshot; later writes to the
// replica copy-on-write. No data is copied. Idempotent for the same
// name, replica and (if given) UUID.
func (p *Pool) CreateSnapshot(ctx context.Context, replica, snapName, snapUUID string) (*Snapshot, error) {
	u, err := parseUUID(snapUUID)
	if err != nil {
		return nil, err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if err := p.live(); err != nil {
		return nil, err
	}
	v, err := p.findReplica(replica)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if s := p.st.names[snapName]; s != nil && s.snapshot() && s.origin == v.id && (snapUUID == "" || s.uuid == u) {
		p.mu.Unlock()
		return s.snap, nil
	}
	err = p.checkNewLocked(snapName, u, v.cm().n)
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("pool %s: snapshot %q: %w", p.label.Name, snapName, err)
	}
	unfreeze := p.freeze(v)
	defer unfreeze()
	p.mu.Lock()
	if !v.thin() {
		// The replica's clusters move to the snapshot; it needs as many
		// again for its own writes (see reserve.go).
		if err := p.needSpareLocked(fmt.Sprintf("snapshot %q of thick replica %q", snapName, v.name), v.owned.Load()); err != nil {
			p.mu.Unlock()
			return nil, err
		}
	}
	v.amu.Lock()
	sv := &volume{id: p.st.nextID, name: snapName, uuid: u, created: time.Now().UnixNano()}
	// Barrier: data written before the snapshot is durable before it is.
	b, err := p.logLocked(recSnapshotOf(v.id, sv), true)
	if err == nil {
		sv = p.st.vols[sv.id]
		sv.snap = &Snapshot{p: p, v: sv}
	}
	v.amu.Unlock()
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := p.sync(b); err != nil {
		return nil, err
	}
	return sv.snap, nil
}

func (p *Pool) findSnapshot(nameOrUUID string) (*volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v := p.findLocked(nameOrUUID); v != nil && v.snapshot() {
		return v, nil
	}
	return nil, fmt.Errorf("pool %s: snapshot %q: %w", p.label.Name, nameOrUUID, ErrNotFound)
}

// Snapshot returns a snapshot by name or UUID.
func (p *Pool) Snapshot(nameOrUUID string) (*Snapshot, error) {
	if err := p.live(); err != nil {
		return nil, err
	}
	v, err := p.findSnapshot(nameOrUUID)
	if err != nil {
		return nil, err
	}
	return v.snap, nil
}

// CloneSnapshot creates a writable thin replica whose unwritten clusters
// read through to the snapshot. Clones can be snapshotted and cloned
// again. Idempotent for the same name, snapshot and (if given) UUID.
func (p *Pool) CloneSnapshot(ctx context.Context, snapName, cloneName, cloneUUID string) (*Replica, error) {
	u, err := parseUUID(cloneUUID)
	if err != nil {
		return nil, err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if err := p.live(); err != nil {
		return nil, err
	}
	s, err := p.findSnapshot(snapName)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if c := p.st.names[cloneName]; c != nil && !c.snapshot() && c.parentID == s.id && c.flags&flagClone != 0 &&
		(cloneUUID == "" || c.uuid == u) {
		p.mu.Unlock()
		return c.rep, nil
	}
	err = p.checkNewLocked(cloneName, u, s.cm().n)
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("pool %s: clone %q: %w", p.label.Name, cloneName, err)
	}
	v := &volume{name: cloneName, uuid: u, created: time.Now().UnixNano(), flags: flagThin | flagClone, parentID: s.id}
	v.size.Store(s.size.Load())
	return p.createVolume(v, nil, nil, 0)
}

// DestroySnapshot destroys a snapshot. With one dependent (the replica or
// newer snapshot reading through it) the snapshot's clusters move into
// that dependent (no data copied). With more (clones), it fails with
// ErrHasDependents unless force: then every clone line is first
// inflated (given its own copies of the snapshot's clusters) and
// re-parented to the snapshot's parent.
func (p *Pool) DestroySnapshot(ctx context.Context, snapName string, force bool) error {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if err := p.live(); err != nil {
		return err
	}
	s, err := p.findSnapshot(snapName)
	if err != nil {
		return err
	}
	p.mu.Lock()
	kids := p.st.children(s)
	p.mu.Unlock()
	// Without force, a snapshot that clones depend on stays: destroying it
	// would change what the clones are made of (promote or inflate them).
	// Its own source replica (or a newer snapshot of it) merges silently.
	cloned := false
	for _, k := range kids {
		cloned = cloned || k.flags&flagClone != 0
	}
	if len(kids) > 1 || cloned {
		if !force {
			names := make([]string, len(kids))
			for i, k := range kids {
				names[i] = k.name
			}
			return fmt.Errorf("pool %s: snapshot %s has dependents %s: %w", p.label.Name, s.name, strings.Join(names, ", "), ErrHasDependents)
		}
		keep := kids[0]
		for _, k := range kids {
			if k.flags&flagClone == 0 {
				keep = k
				break
			}
		}
		for _, k := range kids {
			if k != keep {
				if err := p.inflate(k, s); err != nil {
					return fmt.Errorf("pool %s: inflate %s: %w", p.label.Name, k.name, err)
				}
			}
		}
		kids = []*volume{keep}
	}
	if len(kids) == 0 {
		return p.destroyVolume(s)
	}
	s.destroyed.Store(true)
	p.mu.Lock()
	b, err := p.logLocked(recIDs(recMerge, s.id, kids[0].id), false)
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

// inflate gives x its own copy of every entry of its parent s that x
// reads through to, then re-parents x to s's parent.
func (p *Pool) inflate(x, s *volume) error {
	sm := s.cm()
	var ls []uint32
	p.mu.Lock()
	sm.each(func(l, _ uint32) { ls = append(ls, l) })
	p.mu.Unlock()
	g := p.enter()
	defer exitGate(&g)
	for _, l := range ls {
		e := sm.get(l)
		xv := x.view.Load()
		if l >= xv.through || l >= xv.m.n || xv.m.get(l) != mNone {
			continue
		}
		var err error
		if e == mZero {
			p.mu.Lock()
			x.amu.Lock()
			switch {
			case x.cm().get(l) != mNone || x.pending[l] != nil:
			case p.st.marks >= p.st.maxMarkers():
				err = fmt.Errorf("too many zero markers: %w", ErrNoSpace)
			default:
				_, err = p.logLocked(recSetMapOf(x.id, []mrun{{l, mZero, 1}}), false)
			}
			x.amu.Unlock()
			p.mu.Unlock()
		} else {
			err = p.firstWrite(&g, x, l, 0, 0, nil)
		}
		if err != nil {
			return err
		}
	}
	p.mu.Lock()
	b, err := p.logLocked(recIDs(recReparent, x.id), false)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return p.sync(b)
}

// referenced counts the logical clusters of v that resolve to data,
// skipping map pages that are empty at every level of the chain.
func referenced(v *volume) int {
	vw := v.view.Load()
	n := 0
	for pg := uint32(0); pg < uint32(len(vw.m.pages)); pg++ {
		empty := true
		for x := v; x != nil && empty; {
			xv := x.view.Load()
			if pg<<pageShift >= xv.m.n {
				break
			}
			if int(pg) < len(xv.m.pages) && xv.m.pages[pg].Load() != nil {
				empty = false
			}
			if pg<<pageShift >= xv.through {
				break
			}
			x = xv.parent
		}
		if empty {
			continue
		}
		for l := pg << pageShift; l < min((pg+1)<<pageShift, vw.m.n); l++ {
			if isCluster(resolve(v, l)) {
				n++
			}
		}
	}
	return n
}

// Snapshots lists snapshots sorted by creation time.
func (p *Pool) Snapshots() []SnapshotInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []SnapshotInfo
	for _, v := range p.st.vols {
		if v.snapshot() {
			out = append(out, p.snapInfoLocked(v))
		}
	}
	slices.SortFunc(out, func(a, b SnapshotInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func (p *Pool) snapInfoLocked(v *volume) SnapshotInfo {
	cs := p.label.ClusterSize
	i := SnapshotInfo{Name: v.name, UUID: v.uuid.String(), Created: time.Unix(0, v.created), Size: v.size.Load()}
	if o := p.st.vols[v.origin]; o != nil {
		i.Source, i.SourceUUID = o.name, o.uuid.String()
	}
	vw := v.view.Load()
	if vw.parent != nil {
		i.Parent = vw.parent.name
	}
	i.ReferencedBytes = int64(referenced(v)) * cs
	kids := p.st.children(v)
	for _, k := range kids {
		if k.flags&flagClone != 0 && !k.snapshot() {
			i.Clones = append(i.Clones, k.name)
		}
	}
	vw.m.each(func(l, e uint32) {
		if !isCluster(e) {
			return
		}
		for _, k := range kids {
			kv := k.view.Load()
			if l < kv.through && l < kv.m.n && kv.m.get(l) == mNone {
				return // a dependent reads this cluster
			}
		}
		i.ExclusiveBytes += cs
	})
	return i
}
