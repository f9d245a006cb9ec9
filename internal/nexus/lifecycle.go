package nexus

import (
	"context"
	"errors"

	"github.com/kura-io/kura/internal/blockdev"
)

// Pause stops admitting I/O and waits until in-flight I/O completed
// (used around nexus snapshots). Pauses nest; each needs a Resume.
func (n *Nexus) Pause(ctx context.Context) error { return n.gate.pause(ctx) }

// Resume undoes one Pause.
func (n *Nexus) Resume() { n.gate.resume() }

// Shutdown quiesces I/O, stops rebuilds, flushes and closes the children
// and records a clean shutdown in the NexusInfo store. Dirty logs stay on
// disk so a later nexus over the same children can rebuild partially.
// Idempotent. I/O afterwards fails with ErrShutdown.
func (n *Nexus) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if n.stopping {
		n.mu.Unlock()
		return nil
	}
	n.stopping = true
	n.mu.Unlock()
	n.gate.close()
	close(n.wdStop)
	n.wdDone.Wait()

	// Flush children that hold good data; a failing one is faulted.
	n.mu.Lock()
	var open []*instance
	for _, c := range n.children {
		if c.state == ChildOpen {
			open = append(open, c.inst)
		}
	}
	n.mu.Unlock()
	var ferr error
	for _, in := range open {
		if err := n.one(in, opFlush, nil, 0, 0); err != nil {
			if e := n.childFailed(in, err, nil); e != nil && ferr == nil {
				ferr = e
			}
		}
	}

	n.mu.Lock()
	n.shutdown = true
	info := n.infoLocked(ferr == nil && n.broken == nil)
	for _, c := range n.children {
		out := Step(Input{State: c.state, Event: EvClose})
		if out.Err == nil {
			n.applyLocked(ctx, c, out, "", nil)
		}
		if c.log != nil {
			c.log.Close()
		}
	}
	serr := n.cfg.Store.Store(ctx, n.cfg.UUID, info)
	if n.intent != nil {
		if serr == nil && info.CleanShutdown {
			n.intent.removeAll() // flushed and recorded clean: nothing in flight
		} else {
			n.intent.closeAll()
		}
	}
	n.mu.Unlock()

	done := make(chan struct{})
	go func() { n.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(ferr, serr, ctx.Err())
	}
	return errors.Join(ferr, serr)
}

// Destroy shuts the nexus down and deletes its dirty logs. The NexusInfo
// record stays (marked clean) so a control plane can still tell which
// replicas are current.
func (n *Nexus) Destroy(ctx context.Context) error {
	err := n.Shutdown(ctx)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.children {
		if c.log != nil {
			if rerr := c.log.Remove(); rerr != nil {
				err = errors.Join(err, rerr)
			}
			c.log = nil
		}
	}
	return err
}

// Close implements blockdev.Device: Shutdown with no deadline. A second
// Close returns blockdev.ErrClosed.
func (n *Nexus) Close() error {
	n.mu.Lock()
	already := n.stopping
	n.mu.Unlock()
	if already {
		return blockdev.ErrClosed
	}
	return n.Shutdown(context.Background())
}

// closeInstances closes every open instance (failed construction).
func (n *Nexus) closeInstances() {
	for _, c := range n.children {
		if c.inst != nil {
			c.inst.close(0)
		}
		if c.log != nil {
			c.log.Close()
		}
	}
}

var _ blockdev.Device = (*Nexus)(nil)
var _ blockdev.Allocation = (*Nexus)(nil)
