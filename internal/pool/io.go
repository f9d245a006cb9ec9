package pool

import (
	"fmt"

	"github.com/kura-io/kura/internal/blockdev"
)

// resolve returns the entry that serves logical cluster l of v: its own
// entry, else its ancestors' (bounded by each view's through), else mNone.
// Lock-free; cost is one map lookup per chain level, no I/O.
func resolve(v *volume, l uint32) uint32 {
	for v != nil {
		vw := v.view.Load()
		if l < vw.m.n {
			if e := vw.m.get(l); e != mNone {
				return e
			}
		}
		if l >= vw.through {
			return mNone
		}
		v = vw.parent
	}
	return mNone
}

// resolveBelow resolves l in v's ancestors only (what v shows through an
// mNone entry).
func resolveBelow(v *volume, l uint32) uint32 {
	vw := v.view.Load()
	if l >= vw.through {
		return mNone
	}
	return resolve(vw.parent, l)
}

func exitGate(g *gateRef) { g.exit() }

func (p *Pool) readVol(v *volume, b []byte, off int64) (int, error) {
	if err := blockdev.CheckRange(off, int64(len(b)), p.bs, v.size.Load()); err != nil {
		return 0, err
	}
	g := p.enter()
	defer exitGate(&g)
	if v.destroyed.Load() {
		return 0, ErrClosed
	}
	cs := p.label.ClusterSize
	for done := 0; done < len(b); {
		pos := off + int64(done)
		l, in := uint32(pos/cs), pos%cs
		n := int(min(cs-in, int64(len(b)-done)))
		piece := b[done : done+n]
		if c := resolve(v, l); isCluster(c) {
			if _, err := p.dev.ReadAt(piece, p.clusterOff(c-1)+in); err != nil {
				return done, err
			}
		} else {
			clear(piece)
		}
		done += n
	}
	return len(b), nil
}

func (p *Pool) writeVol(v *volume, b []byte, off int64) (int, error) {
	if err := blockdev.CheckRange(off, int64(len(b)), p.bs, v.size.Load()); err != nil {
		return 0, err
	}
	if v.snapshot() {
		return 0, blockdev.ErrReadOnly
	}
	g := p.enter()
	defer exitGate(&g)
	p.waitFrozen(&g, v)
	if v.destroyed.Load() {
		return 0, ErrClosed
	}
	cs := p.label.ClusterSize
	for done := 0; done < len(b); {
		pos := off + int64(done)
		l, in := uint32(pos/cs), pos%cs
		n := int(min(cs-in, int64(len(b)-done)))
		piece := b[done : done+n]
		var err error
		if c := v.cm().get(l); isCluster(c) {
			_, err = p.dev.WriteAt(piece, p.clusterOff(c-1)+in)
		} else {
			err = p.firstWrite(&g, v, l, in, int64(n), piece)
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return len(b), nil
}

// firstWrite writes [in, in+n) of logical cluster l of v, which has no
// cluster of its own yet: it takes a zeroed cluster from the durable
// window, copies the parent's cluster into it when the parent has data
// (copy-on-write), writes the data (nil = zeros), then publishes the
// mapping and queues its record. The record becomes durable with the
// next Flush; a COW record carries a barrier so the copied data is
// durable first. Concurrent first writes to one cluster wait for the
// first one (pending). *g is exited while waiting or allocating.
func (p *Pool) firstWrite(g *gateRef, v *volume, l uint32, in, n int64, data []byte) error {
	for {
		v.amu.Lock()
		m := v.cm()
		if l >= m.n {
			v.amu.Unlock()
			return fmt.Errorf("pool: volume %s shrank under I/O: %w", v.name, blockdev.ErrOutOfRange)
		}
		e := m.get(l)
		if isCluster(e) {
			v.amu.Unlock()
			return p.writeCluster(e-1, in, n, data)
		}
		if ch := v.pending[l]; ch != nil {
			v.amu.Unlock()
			g.exit()
			<-ch
			*g = p.enter()
			if v.destroyed.Load() {
				return ErrClosed
			}
			continue
		}
		if data == nil && (e == mZero || !isCluster(resolveBelow(v, l))) {
			v.amu.Unlock()
			return nil // zeros over a range that already reads zeros
		}
		ch := make(chan struct{})
		if v.pending == nil {
			v.pending = map[uint32]chan struct{}{}
		}
		v.pending[l] = ch
		v.amu.Unlock()
		err := p.fill(g, v, l, in, n, data)
		if err != nil {
			v.amu.Lock()
			delete(v.pending, l)
			v.amu.Unlock()
		}
		close(ch)
		return err
	}
}

func (p *Pool) writeCluster(c uint32, in, n int64, data []byte) error {
	if data == nil {
		return p.dev.WriteZeroes(p.clusterOff(c)+in, n)
	}
	_, err := p.dev.WriteAt(data, p.clusterOff(c)+in)
	return err
}

// fill allocates, writes and publishes cluster l of v (see firstWrite).
func (p *Pool) fill(g *gateRef, v *volume, l uint32, in, n int64, data []byte) error {
	g.exit()
	if v.thin() {
		// Early check (the one at publish below is authoritative).
		p.mu.Lock()
		err := p.needSpareLocked("a thin first write", 1)
		p.mu.Unlock()
		if err != nil {
			*g = p.enter()
			return err
		}
	}
	c, err := p.allocData()
	*g = p.enter()
	if err != nil {
		return err
	}
	fail := func(err error) error {
		p.mu.Lock()
		p.discardLocked(c)
		p.mu.Unlock()
		return err
	}
	if v.destroyed.Load() {
		return fail(ErrClosed)
	}
	src := mNone
	if v.cm().get(l) != mZero {
		src = resolveBelow(v, l)
	}
	cow := isCluster(src)
	if cow {
		bp := p.bufs.Get().(*[]byte)
		buf := *bp
		_, err := p.dev.ReadAt(buf, p.clusterOff(src-1))
		if err == nil {
			if data != nil {
				copy(buf[in:], data)
			} else {
				clear(buf[in : in+n])
			}
			_, err = p.dev.WriteAt(buf, p.clusterOff(c))
		}
		p.bufs.Put(bp)
		if err != nil {
			return fail(err)
		}
	} else if data != nil {
		if _, err := p.dev.WriteAt(data, p.clusterOff(c)+in); err != nil {
			return fail(err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	v.amu.Lock()
	defer v.amu.Unlock()
	delete(v.pending, l)
	if v.destroyed.Load() || l >= v.cm().n {
		p.discardLocked(c)
		return ErrClosed
	}
	if v.thin() {
		// c is not mapped yet, so it counts as free here.
		if err := p.needSpareLocked("a thin first write", 1); err != nil {
			p.discardLocked(c)
			return err
		}
	}
	_, err = p.logLocked(recSetMapOf(v.id, []mrun{{l, c + 1, 1}}), cow)
	return err
}

// zeroVol implements WriteZeroes and Unmap: whole clusters of thin
// volumes are released (the entry becomes mNone, or mZero when a parent
// would otherwise show through), everything else is zeroed in place or,
// where a parent shows through, by a copy-on-write first write of zeros.
func (p *Pool) zeroVol(v *volume, off, length int64) error {
	if err := blockdev.CheckRange(off, length, p.bs, v.size.Load()); err != nil {
		return err
	}
	if v.snapshot() {
		return blockdev.ErrReadOnly
	}
	g := p.enter()
	defer exitGate(&g)
	p.waitFrozen(&g, v)
	if v.destroyed.Load() {
		return ErrClosed
	}
	cs := p.label.ClusterSize
	size := v.size.Load()
	for done := int64(0); done < length; {
		pos := off + done
		l, in := uint32(pos/cs), pos%cs
		n := min(cs-in, length-done)
		whole := in == 0 && (n == cs || pos+n == size)
		var err error
		if whole {
			err = p.releaseCluster(&g, v, l, n)
		} else {
			err = p.firstWrite(&g, v, l, in, n, nil)
		}
		if err != nil {
			return err
		}
		done += n
	}
	return nil
}

// releaseCluster makes all of logical cluster l (n bytes) read zeros.
func (p *Pool) releaseCluster(g *gateRef, v *volume, l uint32, n int64) error {
	p.mu.Lock()
	v.amu.Lock()
	e := v.cm().get(l)
	vw := v.view.Load()
	want := mNone
	if l < vw.through && vw.parent != nil && isCluster(resolve(vw.parent, l)) {
		want = mZero
	}
	pend := v.pending[l] != nil
	canMark := want == mNone || p.st.marks < p.st.maxMarkers()
	var err error
	switch {
	case pend || (isCluster(e) && !v.thin()) || !canMark:
		// Zero in place (thick keeps its cluster) or through a first write.
		v.amu.Unlock()
		p.mu.Unlock()
		if isCluster(e) && !pend {
			return p.writeCluster(e-1, 0, n, nil)
		}
		return p.firstWrite(g, v, l, 0, n, nil)
	case e == want:
	default:
		_, err = p.logLocked(recSetMapOf(v.id, []mrun{{l, want, 1}}), false)
	}
	v.amu.Unlock()
	p.mu.Unlock()
	return err
}

// allocatedVol reports whether any cluster of the range resolves to data.
func (p *Pool) allocatedVol(v *volume, off, length int64) (bool, error) {
	if err := blockdev.CheckRange(off, length, p.bs, v.size.Load()); err != nil {
		return false, err
	}
	if v.destroyed.Load() {
		return false, ErrClosed
	}
	if length == 0 {
		return false, nil
	}
	cs := p.label.ClusterSize
	for l := uint32(off / cs); int64(l)*cs < off+length; l++ {
		if isCluster(resolve(v, l)) {
			return true, nil
		}
	}
	return false, nil
}
