package pool

import (
	"fmt"

	"github.com/google/uuid"
)

// applyAll applies a sequence of encoded records.
func (s *state) applyAll(b []byte) error {
	d := dec{b: b}
	for len(d.b) > 0 {
		t := d.u8()
		n := d.u32()
		body := d.take(int(n))
		if d.bad {
			return fmt.Errorf("%w: truncated record", ErrCorrupt)
		}
		if err := s.apply(t, body); err != nil {
			return err
		}
	}
	return nil
}

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, a...)...)
}

// apply validates and applies one record body to s. An error means the
// record does not fit the state (corruption, or a bug in a live caller).
func (s *state) apply(t uint8, body []byte) error {
	d := dec{b: body}
	var err error
	switch t {
	case recCreate:
		err = s.applyCreate(&d)
	case recSetMap:
		vol := d.u32()
		v := s.vols[vol]
		if v == nil {
			return corrupt("set map of unknown volume %d", vol)
		}
		n := d.count(12)
		for i := 0; i < n && err == nil; i++ {
			err = s.setRun(v, mrun{d.u32(), d.u32(), d.u32()}, false)
		}
	case recDestroy:
		v := s.vols[d.u32()]
		if v == nil || len(s.children(v)) > 0 {
			return corrupt("destroy of unknown volume or volume with children")
		}
		s.dropMap(v, 0)
		s.remove(v)
	case recResize:
		err = s.applyResize(&d)
	case recSnapshot:
		err = s.applySnapshot(&d)
	case recMerge:
		err = s.applyMerge(&d)
	case recReparent:
		c := s.vols[d.u32()]
		if c == nil || c.parentID == 0 {
			return corrupt("bad reparent")
		}
		pv := s.vols[c.parentID]
		s.setParent(c, pv.parentID, pv.view.Load().through)
	case recWindow, recClean, recDiscard:
		n := d.count(4)
		for i := 0; i < n && err == nil; i++ {
			err = s.moveCluster(t, d.u32())
		}
	case recFrontier:
		f := d.u32()
		if f < s.frontier || f > s.clusters {
			return corrupt("frontier %d (was %d, clusters %d)", f, s.frontier, s.clusters)
		}
		s.frontier = f
	default:
		return corrupt("unknown record type %d", t)
	}
	if err != nil {
		return err
	}
	if d.bad || len(d.b) != 0 {
		return corrupt("record type %d has a bad length", t)
	}
	return nil
}

// moveCluster moves c between free, window and dirty for recWindow,
// recClean and recDiscard.
func (s *state) moveCluster(t uint8, c uint32) error {
	if c >= s.frontier {
		return corrupt("cluster %d beyond frontier %d", c, s.frontier)
	}
	_, inW := s.window[c]
	_, inD := s.dirty[c]
	switch {
	case t == recWindow && !s.used.get(c):
		s.used.set(c)
		s.window[c] = struct{}{}
	case t == recClean && inD:
		delete(s.dirty, c)
		s.used.clr(c)
	case t == recDiscard && inW:
		delete(s.window, c)
		s.dirty[c] = struct{}{}
	default:
		return corrupt("record %d: cluster %d in wrong state", t, c)
	}
	return nil
}

// setRun applies one map run. fresh is set when loading a checkpoint
// (clusters are not yet marked used and not in the window).
func (s *state) setRun(v *volume, r mrun, fresh bool) error {
	m := v.cm()
	if r.n == 0 || uint64(r.l)+uint64(r.n) > uint64(m.n) {
		return corrupt("map run %d+%d beyond volume %d (%d clusters)", r.l, r.n, v.id, m.n)
	}
	if isCluster(r.v) && uint64(r.v-1)+uint64(r.n) > uint64(s.clusters) {
		return corrupt("map run to cluster %d+%d beyond pool", r.v-1, r.n)
	}
	for i := uint32(0); i < r.n; i++ {
		l, nv := r.l+i, r.v
		if isCluster(nv) {
			nv += i
			c := nv - 1
			if _, inW := s.window[c]; inW && !fresh {
				delete(s.window, c)
			} else if s.used.get(c) || c >= s.frontier {
				return corrupt("cluster %d allocated twice or beyond frontier", c)
			} else {
				s.used.set(c)
			}
			s.mapped++
			v.owned.Add(1)
		} else if nv == mZero {
			if s.marks >= s.maxMarkers() {
				return corrupt("too many zero markers")
			}
			s.marks++
			v.markers++
		}
		s.clearEntry(v, m, l)
		m.set(l, nv)
	}
	return nil
}

// clearEntry releases whatever entry l of v holds: a cluster becomes dirty.
func (s *state) clearEntry(v *volume, m *cmap, l uint32) {
	old := m.get(l)
	switch {
	case old == mZero:
		s.marks--
		v.markers--
	case isCluster(old):
		s.dirty[old-1] = struct{}{}
		s.mapped--
		v.owned.Add(-1)
	}
	m.set(l, mNone)
}

// dropMap releases entries >= from of v's map.
func (s *state) dropMap(v *volume, from uint32) {
	m := v.cm()
	var ls []uint32
	m.each(func(l, _ uint32) {
		if l >= from {
			ls = append(ls, l)
		}
	})
	for _, l := range ls {
		s.clearEntry(v, m, l)
	}
}

func (s *state) remove(v *volume) {
	s.logical -= uint64(v.cm().n)
	delete(s.vols, v.id)
	delete(s.names, v.name)
	delete(s.uuids, v.uuid)
	v.destroyed.Store(true)
}

// setParent points v at parent p, limiting read-through to through.
func (s *state) setParent(v *volume, p uint32, through uint32) {
	v.parentID = p
	vw := v.view.Load()
	v.setView(vw.m, s.vols[p], min(vw.through, through))
}

// wouldCycle reports whether making p the parent of c creates a cycle.
func (s *state) wouldCycle(c *volume, p uint32) bool {
	for i := 0; p != 0; i++ {
		if p == c.id || i > len(s.vols) {
			return true
		}
		pv := s.vols[p]
		if pv == nil {
			return true
		}
		p = pv.parentID
	}
	return false
}

func (s *state) checkNew(id uint32, name string, u uuid.UUID) error {
	switch {
	case id == 0 || s.vols[id] != nil:
		return corrupt("volume id %d reused", id)
	case uint32(len(s.vols)) >= s.maxVols:
		return corrupt("more than %d volumes", s.maxVols)
	case validName(name, maxNameLen) != nil:
		return corrupt("bad volume name")
	case s.names[name] != nil || s.uuids[u] != nil:
		return corrupt("volume name or uuid reused")
	}
	return nil
}

func (s *state) add(v *volume) {
	s.logical += uint64(v.cm().n)
	s.vols[v.id] = v
	s.names[v.name] = v
	s.uuids[v.uuid] = v
	s.nextID = max(s.nextID, v.id+1)
}

func (s *state) checkSize(size int64) error {
	if size <= 0 || size%512 != 0 || (size+s.cs-1)/s.cs > maxLogicalClusters {
		return corrupt("bad volume size %d", size)
	}
	return nil
}

func (s *state) applyCreate(d *dec) error {
	v := &volume{id: d.u32(), flags: d.u32(), parentID: d.u32(), origin: d.u32()}
	size := int64(d.u64())
	v.created = int64(d.u64())
	copy(v.uuid[:], d.take(16))
	v.name = d.str(maxNameLen)
	if d.bad {
		return corrupt("short create record")
	}
	if err := s.checkNew(v.id, v.name, v.uuid); err != nil {
		return err
	}
	if err := s.checkSize(size); err != nil {
		return err
	}
	if v.flags&^knownFlags != 0 || (v.parentID != 0 && s.vols[v.parentID] == nil) {
		return corrupt("create: bad flags or parent")
	}
	n := s.clustersFor(size)
	if !s.roomFor(n) {
		return corrupt("volumes exceed %d logical clusters in total", uint64(maxTotalLogical))
	}
	v.size.Store(size)
	v.setView(newCmap(n), s.vols[v.parentID], n)
	s.add(v)
	return nil
}

func (s *state) applyResize(d *dec) error {
	v := s.vols[d.u32()]
	size := int64(d.u64())
	if v == nil || v.snapshot() {
		return corrupt("resize of unknown volume or snapshot")
	}
	if err := s.checkSize(size); err != nil {
		return err
	}
	n := s.clustersFor(size)
	m := v.cm()
	if n > m.n && !s.roomFor(n-m.n) {
		return corrupt("volumes exceed %d logical clusters in total", uint64(maxTotalLogical))
	}
	s.logical = s.logical - uint64(m.n) + uint64(n)
	if n < m.n {
		s.dropMap(v, n)
	}
	vw := v.view.Load()
	v.setView(m.resized(n), vw.parent, min(vw.through, n))
	v.size.Store(size)
	return nil
}

func (s *state) applySnapshot(d *dec) error {
	src := s.vols[d.u32()]
	v := &volume{id: d.u32(), created: int64(d.u64())}
	copy(v.uuid[:], d.take(16))
	v.name = d.str(maxNameLen)
	if d.bad || src == nil || src.snapshot() {
		return corrupt("snapshot of unknown volume or of a snapshot")
	}
	if err := s.checkNew(v.id, v.name, v.uuid); err != nil {
		return err
	}
	if !s.roomFor(src.cm().n) {
		return corrupt("volumes exceed %d logical clusters in total", uint64(maxTotalLogical))
	}
	v.flags = flagSnapshot | src.flags&(flagThin|flagClone)
	v.origin = src.id
	v.size.Store(src.size.Load())
	m := src.cm()
	v.parentID = src.parentID
	sw := src.view.Load()
	v.setView(m, sw.parent, sw.through)
	v.owned.Store(src.owned.Load())
	v.markers = src.markers
	s.add(v)
	// One store switches src to (empty map, parent = snapshot).
	src.parentID = v.id
	src.setView(newCmap(m.n), v, m.n)
	src.owned.Store(0)
	src.markers = 0
	return nil
}

func (s *state) applyMerge(d *dec) error {
	sv, c := s.vols[d.u32()], s.vols[d.u32()]
	if sv == nil || c == nil || !sv.snapshot() || c.parentID != sv.id || len(s.children(sv)) != 1 {
		return corrupt("bad merge")
	}
	sm, cm := sv.cm(), c.cm()
	// The child reads through only below its own bound (it may have been
	// shrunk since the snapshot was taken): entries at or above it are
	// not what the child shows, so they are freed, not moved.
	ct := c.view.Load().through
	var ls []uint32
	sm.each(func(l, _ uint32) { ls = append(ls, l) })
	for _, l := range ls {
		v := sm.get(l)
		if l < cm.n && l < ct && cm.get(l) == mNone {
			// Move the entry without freeing it.
			if v == mZero {
				sv.markers--
				c.markers++
			} else {
				sv.owned.Add(-1)
				c.owned.Add(1)
			}
			cm.set(l, v)
			continue
		}
		s.clearEntry(sv, sm, l)
	}
	s.setParent(c, sv.parentID, sv.view.Load().through)
	s.remove(sv)
	return nil
}
