package blockdev

import "sync/atomic"

// gateClosed is the bit of gate.state set once the gate is closed; the low
// bits count calls in flight.
const gateClosed = int64(1) << 62

// gate lets any number of calls enter concurrently until it is closed, and
// lets close wait for the calls in flight to leave. Devices use it so Close
// never releases a file descriptor or a ring under a running I/O, without
// holding a lock across the I/O. The zero value is not usable: use newGate.
type gate struct {
	state   atomic.Int64
	drained chan struct{} // closed by the last exit after close
}

func newGate() *gate { return &gate{drained: make(chan struct{})} }

// enter registers a call; false means the gate is closed.
func (g *gate) enter() bool {
	for {
		s := g.state.Load()
		if s&gateClosed != 0 {
			return false
		}
		if g.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// exit ends a call started by a successful enter.
func (g *gate) exit() {
	if g.state.Add(-1) == gateClosed {
		close(g.drained)
	}
}

// close closes the gate and waits until every call in flight has exited.
// It reports false when the gate was already closed.
func (g *gate) close() bool {
	for {
		s := g.state.Load()
		if s&gateClosed != 0 {
			return false
		}
		if g.state.CompareAndSwap(s, s|gateClosed) {
			if s != 0 {
				<-g.drained
			}
			return true
		}
	}
}
