package pool

import (
	"context"
	"fmt"
)

// verify checks the invariants of s: every cluster is in exactly one of
// {a map, dirty, window, free}; the used bitmap, counters and per-volume
// counts match the maps; all used clusters are below the frontier; maps
// match volume sizes; parents exist and form no cycle.
func (s *state) verify() error {
	used := newBitmap(int64(s.clusters))
	var mapped, marks int64
	claim := func(c uint32, what string) error {
		if c >= s.clusters || c >= s.frontier {
			return corrupt("%s: cluster %d beyond frontier %d", what, c, s.frontier)
		}
		if used.get(c) {
			return corrupt("%s: cluster %d referenced twice (refcount > 1)", what, c)
		}
		used.set(c)
		return nil
	}
	for id, v := range s.vols {
		if v.id != id || s.names[v.name] != v || s.uuids[v.uuid] != v || id >= s.nextID {
			return corrupt("volume %d: index mismatch", id)
		}
		vw := v.view.Load()
		if vw.m.n != s.clustersFor(v.size.Load()) {
			return corrupt("volume %s: map has %d clusters, size needs %d", v.name, vw.m.n, s.clustersFor(v.size.Load()))
		}
		if vw.through > vw.m.n {
			return corrupt("volume %s: read-through limit %d beyond %d clusters", v.name, vw.through, vw.m.n)
		}
		if (v.parentID == 0) != (vw.parent == nil) || (vw.parent != nil && (vw.parent.id != v.parentID || s.vols[v.parentID] != vw.parent)) {
			return corrupt("volume %s: parent pointer mismatch", v.name)
		}
		if s.wouldCycle(v, v.parentID) && v.parentID != 0 {
			return corrupt("volume %s: parent cycle", v.name)
		}
		if v.parentID != 0 && !s.vols[v.parentID].snapshot() {
			return corrupt("volume %s: parent is not a snapshot", v.name)
		}
		var owned, vm int64
		var err error
		vw.m.each(func(l, e uint32) {
			if err != nil {
				return
			}
			if l >= vw.m.n {
				err = corrupt("volume %s: entry %d beyond map", v.name, l)
			} else if e == mZero {
				vm++
			} else {
				owned++
				err = claim(e-1, "volume "+v.name)
			}
		})
		if err != nil {
			return err
		}
		if owned != v.owned.Load() || vm != v.markers {
			return corrupt("volume %s: owned %d/%d markers %d/%d", v.name, owned, v.owned.Load(), vm, v.markers)
		}
		mapped += owned
		marks += vm
	}
	for c := range s.dirty {
		if err := claim(c, "dirty"); err != nil {
			return err
		}
	}
	for c := range s.window {
		if err := claim(c, "window"); err != nil {
			return err
		}
	}
	if !used.equal(s.used) {
		return corrupt("allocation bitmap does not match maps")
	}
	var logical uint64
	for _, v := range s.vols {
		logical += uint64(v.cm().n)
	}
	if logical != s.logical {
		return corrupt("total logical clusters %d, counter %d", logical, s.logical)
	}
	if mapped != s.mapped || marks != s.marks {
		return corrupt("counters: mapped %d/%d markers %d/%d", mapped, s.mapped, marks, s.marks)
	}
	return nil
}

// Check is fsck for a live pool: it verifies the in-memory metadata
// invariants (no cluster referenced twice, refcounts/counters/bitmap match
// the maps), then commits, re-reads the on-disk checkpoint and journal
// into a fresh state and verifies that it equals the in-memory one.
func (p *Pool) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := p.live(); err != nil {
		return err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if err := p.sync(nil); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.st.verify(); err != nil {
		return err
	}
	disk, err := p.load()
	if err != nil {
		return fmt.Errorf("pool %s: re-reading metadata: %w", p.label.Name, err)
	}
	if err := disk.verify(); err != nil {
		return err
	}
	// The in-memory state may hold records enqueued after the sync
	// above (first writes racing Check); compare only when it is quiet.
	if a, b := encodeState(p.st), encodeState(disk); string(a) != string(b) && p.quiet() {
		return corrupt("on-disk metadata differs from in-memory state")
	}
	return nil
}
