package pool

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// windowSize is how many zeroed clusters one refill reserves for
// data-first (thin first write, copy-on-write) allocations: one metadata
// sync per windowSize such allocations.
const windowSize = 32

// ioGate counts I/Os in flight that may still use cluster numbers looked
// up before a metadata change. Operations that free clusters or move maps
// swap in a new gate and wait for the old one to drain (an RCU-style
// grace period), so no stale I/O touches a reused cluster.
//
// The count is spread over slots handed out through a sync.Pool, which
// keeps them CPU-local: a shared counter would bounce its cache line
// between CPUs on every I/O (measured: ~200 ns per I/O at 32 goroutines).
type ioGate struct {
	pool sync.Pool // of *gateSlot
	mu   sync.Mutex
	all  []*gateSlot // every slot of this gate; guarded by mu
	next int         // round-robin reuse once all is full; guarded by mu
}

// maxGateSlots bounds the registry: sync.Pool drops idle slots at GC, and
// sharing a slot is correct (just slower), so New reuses old ones.
const maxGateSlots = 256

type gateSlot struct {
	n atomic.Int64
	g *ioGate
	_ [48]byte
}

func newGate() *ioGate {
	g := &ioGate{}
	g.pool.New = func() any {
		g.mu.Lock()
		defer g.mu.Unlock()
		if len(g.all) >= maxGateSlots {
			g.next = (g.next + 1) % len(g.all)
			return g.all[g.next]
		}
		s := &gateSlot{g: g}
		g.all = append(g.all, s)
		return s
	}
	return g
}

// gateRef is one registration in a gate.
type gateRef struct{ s *gateSlot }

// enter registers an I/O; pass the result to exit.
func (p *Pool) enter() gateRef {
	for {
		g := p.gate.Load()
		s := g.pool.Get().(*gateSlot)
		s.n.Add(1)
		if p.gate.Load() == g {
			return gateRef{s}
		}
		s.n.Add(-1)
		g.pool.Put(s)
	}
}

func (r gateRef) exit() {
	r.s.n.Add(-1)
	r.s.g.pool.Put(r.s)
}

// drain waits until every I/O that entered before the call has exited.
// The caller must not itself be inside the gate.
func (p *Pool) drain() {
	old := p.gate.Swap(newGate())
	old.mu.Lock()
	slots := old.all
	old.mu.Unlock()
	for _, s := range slots {
		for i := 0; s.n.Load() != 0; i++ {
			if i < 100 {
				runtime.Gosched()
			} else {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}
}

// quiet reports whether no record is queued or being written.
func (p *Pool) quiet() bool {
	p.cm.Lock()
	defer p.cm.Unlock()
	return len(p.cmt.cur.buf) == 0 && !p.cmt.busy
}

// zeroClusters writes zeros over the clusters (coalescing runs). The
// caller flushes (or relies on a barrier) before depending on it.
func (p *Pool) zeroClusters(cl []uint32) error {
	for i := 0; i < len(cl); {
		j := i + 1
		for j < len(cl) && cl[j] == cl[j-1]+1 {
			j++
		}
		if err := p.dev.WriteZeroes(p.clusterOff(cl[i]), int64(j-i)*p.label.ClusterSize); err != nil {
			return fmt.Errorf("pool %s: zero clusters: %w", p.label.Name, err)
		}
		i = j
	}
	return nil
}

func (p *Pool) clusterOff(c uint32) int64 { return p.label.DataOffset + int64(c)*p.label.ClusterSize }

// allocData returns a zeroed cluster from the durable window for a
// first write. The caller must not be inside the gate.
func (p *Pool) allocData() (uint32, error) {
	for try := 0; ; try++ {
		p.mu.Lock()
		if n := len(p.avail); n > 0 {
			c := p.avail[n-1]
			p.avail = p.avail[:n-1]
			p.mu.Unlock()
			return c, nil
		}
		p.mu.Unlock()
		if try > 0 {
			return 0, fmt.Errorf("pool %s: %w", p.label.Name, ErrNoSpace)
		}
		p.allocMu.Lock()
		p.mu.Lock()
		n := len(p.avail)
		p.mu.Unlock()
		var err error
		if n == 0 {
			err = p.refill()
		}
		p.allocMu.Unlock()
		if err != nil {
			return 0, err
		}
	}
}

// refill reserves up to windowSize free zeroed clusters into the window
// and waits until the reservation is durable. Caller holds allocMu.
func (p *Pool) refill() error {
	cl, ext, f0, err := p.takeFree(windowSize, false)
	if err != nil {
		return err
	}
	if err := p.zeroClusters(ext); err != nil {
		return err
	}
	p.mu.Lock()
	var r []byte
	if len(ext) > 0 {
		r = append(r, recIDs(recFrontier, f0+uint32(len(ext)))...)
	}
	all := append(cl, ext...)
	r = append(r, recList(recWindow, all)...)
	b, err := p.logLocked(r, len(ext) > 0)
	if err == nil {
		p.avail = append(p.avail, all...)
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return p.sync(b)
}

// takeFree picks up to want free clusters (exactly want when exact):
// free ones below the frontier first, then fresh ones past it (ext, to
// be zeroed and recorded with a frontier record), and for exact requests
// finally unused window clusters. It reclaims dirty clusters when short.
// Caller holds allocMu and is not inside the gate.
func (p *Pool) takeFree(want int64, exact bool) (cl, ext []uint32, f0 uint32, err error) {
	for try := 0; ; try++ {
		p.mu.Lock()
		s := p.st
		f0 = s.frontier
		cl, ext = cl[:0], ext[:0]
		for _, rng := range [][2]uint32{{min(p.hint, f0), f0}, {0, min(p.hint, f0)}} {
			for c := rng[0]; int64(len(cl)) < want; c++ {
				if c = s.used.nextClear(c, rng[1]); c >= rng[1] {
					break
				}
				cl = append(cl, c)
				p.hint = c + 1
			}
		}
		for i := int64(0); int64(len(cl)+len(ext)) < want && i < int64(s.clusters-f0); i++ {
			ext = append(ext, f0+uint32(i))
		}
		got := int64(len(cl) + len(ext))
		if exact && try > 0 && got < want && got+int64(len(p.avail)) >= want {
			k := len(p.avail) - int(want-got)
			cl = append(cl, p.avail[k:]...)
			p.avail = p.avail[:k]
			got = want
		}
		dirty := len(s.dirty)
		p.mu.Unlock()
		if got == want || (!exact && got > 0) {
			return cl, ext, f0, nil
		}
		if try > 0 || (dirty == 0 && !exact) {
			return nil, nil, 0, fmt.Errorf("pool %s: need %d clusters, %d free: %w", p.label.Name, want, got, ErrNoSpace)
		}
		if err := p.reclaim(); err != nil {
			return nil, nil, 0, err
		}
	}
}

// reclaim zeroes dirty clusters and returns them to free space, after a
// grace period for I/O that may still address them. Caller holds allocMu
// and is not inside the gate.
func (p *Pool) reclaim() error {
	p.mu.Lock()
	cl := sortedKeys(p.st.dirty)
	p.mu.Unlock()
	if len(cl) == 0 {
		return nil
	}
	p.drain()
	if err := p.zeroClusters(cl); err != nil {
		return err
	}
	p.mu.Lock()
	b, err := p.logLocked(recList(recClean, cl), true)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return p.sync(b)
}

// discardLocked returns a window cluster that a failed or abandoned first
// write may have written to: it becomes dirty and is zeroed by the next
// reclaim. Caller holds p.mu.
func (p *Pool) discardLocked(c uint32) {
	_, _ = p.logLocked(recList(recDiscard, []uint32{c}), false)
}
