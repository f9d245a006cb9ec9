package pool

import "sync/atomic"

// Map entry values. A volume's map sends a logical cluster to a physical
// cluster (stored as cluster+1), to mNone (not allocated here: read
// through to the parent, or zeros without one) or to mZero (reads as zeros
// without reading through; left by unmapping a cluster of a volume with a
// parent).
const (
	mNone uint32 = 0
	mZero uint32 = 0xFFFFFFFF
)

func isCluster(v uint32) bool { return v != mNone && v != mZero }

const (
	pageShift = 9
	pageLen   = 1 << pageShift
	pageMask  = pageLen - 1
)

// mpage is one page of map entries; pages are allocated on first use, so a
// map costs memory for written regions plus 8 bytes per 512 clusters.
type mpage [pageLen]atomic.Uint32

// cmap is a volume's logical→physical cluster map. Entries are read with
// atomic loads without locks on the I/O path; writers are serialized by the
// owning volume's amu (live) or by single-threaded replay.
type cmap struct {
	n     uint32
	pages []atomic.Pointer[mpage]
}

func newCmap(n uint32) *cmap {
	return &cmap{n: n, pages: make([]atomic.Pointer[mpage], (uint64(n)+pageLen-1)>>pageShift)}
}

func (m *cmap) get(l uint32) uint32 {
	pg := m.pages[l>>pageShift].Load()
	if pg == nil {
		return mNone
	}
	return pg[l&pageMask].Load()
}

func (m *cmap) set(l, v uint32) {
	i := l >> pageShift
	pg := m.pages[i].Load()
	if pg == nil {
		if v == mNone {
			return
		}
		pg = new(mpage)
		m.pages[i].Store(pg)
	}
	pg[l&pageMask].Store(v)
}

// resized returns a map of n entries sharing m's pages. The caller must
// have cleared entries >= n before shrinking.
func (m *cmap) resized(n uint32) *cmap {
	nm := newCmap(n)
	for i := range nm.pages {
		if i < len(m.pages) {
			nm.pages[i].Store(m.pages[i].Load())
		}
	}
	return nm
}

// each calls f for every non-mNone entry in ascending order.
func (m *cmap) each(f func(l, v uint32)) {
	for i := range m.pages {
		pg := m.pages[i].Load()
		if pg == nil {
			continue
		}
		for j := range pg {
			if v := pg[j].Load(); v != mNone {
				f(uint32(i)<<pageShift|uint32(j), v)
			}
		}
	}
}

// mrun is a run of map entries: n entries from logical cluster l; v is
// the first value, incremented per entry when it is a cluster.
type mrun struct{ l, v, n uint32 }

// runs encodes m's non-mNone entries as runs.
func (m *cmap) runs() []mrun {
	var out []mrun
	m.each(func(l, v uint32) {
		if k := len(out) - 1; k >= 0 {
			r := &out[k]
			if r.l+r.n == l && ((v == mZero && r.v == mZero) || (isCluster(v) && isCluster(r.v) && r.v+r.n == v)) {
				r.n++
				return
			}
		}
		out = append(out, mrun{l, v, 1})
	})
	return out
}

// bitmap is a fixed-size bit set, one bit per physical cluster.
type bitmap []uint64

func newBitmap(n int64) bitmap     { return make(bitmap, (n+63)/64) }
func (b bitmap) get(i uint32) bool { return b[i>>6]&(1<<(i&63)) != 0 }
func (b bitmap) set(i uint32)      { b[i>>6] |= 1 << (i & 63) }
func (b bitmap) clr(i uint32)      { b[i>>6] &^= 1 << (i & 63) }
func (b bitmap) equal(o bitmap) bool {
	if len(b) != len(o) {
		return false
	}
	for i := range b {
		if b[i] != o[i] {
			return false
		}
	}
	return true
}

// nextClear returns the first clear bit in [from, limit), or limit.
func (b bitmap) nextClear(from, limit uint32) uint32 {
	for i := from; i < limit; {
		w := b[i>>6] >> (i & 63)
		if w&1 == 0 {
			return i
		}
		if ^w == 0 {
			i = (i | 63) + 1
			continue
		}
		i++
	}
	return limit
}
