package nexus

import (
	"context"
	"sync"
	"sync/atomic"
)

// Gate states.
const (
	gateOpen int32 = iota
	gatePaused
	gateClosed
)

// gate admits I/O, and lets Pause wait for in-flight I/O to drain. The
// hot path is two atomic adds and one load; the mutex is only taken when
// the gate is not open.
type gate struct {
	inflight atomic.Int64
	state    atomic.Int32

	mu     sync.Mutex // guards pauses and the state transitions; cond waits
	cond   sync.Cond
	pauses int
}

func newGate() *gate {
	g := &gate{}
	g.cond.L = &g.mu
	return g
}

// enter admits one I/O, waiting while paused. It fails once closed.
func (g *gate) enter() error {
	for {
		g.inflight.Add(1)
		st := g.state.Load()
		if st == gateOpen {
			return nil
		}
		g.exit()
		if st == gateClosed {
			return ErrShutdown
		}
		g.mu.Lock()
		for g.state.Load() == gatePaused {
			g.cond.Wait()
		}
		g.mu.Unlock()
	}
}

// tryEnter admits one I/O only if the gate is open, never waiting.
func (g *gate) tryEnter() bool {
	g.inflight.Add(1)
	if g.state.Load() == gateOpen {
		return true
	}
	g.exit()
	return false
}

// exit ends an I/O admitted by enter.
func (g *gate) exit() {
	if g.inflight.Add(-1) == 0 && g.state.Load() != gateOpen {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	}
}

// pause stops admitting I/O and waits until none is in flight. Pauses
// nest; each needs a resume. On ctx expiry the pause is undone.
func (g *gate) pause(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state.Load() == gateClosed {
		return ErrShutdown
	}
	g.pauses++
	g.state.Store(gatePaused)
	stop := context.AfterFunc(ctx, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer stop()
	for g.inflight.Load() > 0 {
		if err := ctx.Err(); err != nil {
			g.resumeLocked()
			return err
		}
		g.cond.Wait()
	}
	return nil
}

// resume undoes one pause.
func (g *gate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.resumeLocked()
}

func (g *gate) resumeLocked() {
	if g.pauses == 0 {
		return
	}
	g.pauses--
	if g.pauses == 0 && g.state.Load() == gatePaused {
		g.state.Store(gateOpen)
	}
	g.cond.Broadcast()
}

// close refuses new I/O forever and waits for in-flight I/O.
func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.state.Store(gateClosed)
	g.cond.Broadcast()
	for g.inflight.Load() > 0 {
		g.cond.Wait()
	}
}
