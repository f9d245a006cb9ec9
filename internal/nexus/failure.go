package nexus

import (
	"context"
	"errors"
	"fmt"

	"github.com/kura-io/kura/internal/blockdev"
)

// healthyNow reports whether c is healthy right now.
func (c *child) healthyNow(n *Nexus) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return c.state == ChildOpen
}

// childFailed handles a failed child I/O on instance in: it faults the
// child (persisting NexusInfo) unless it is the last healthy one, and
// marks rng (offset, length of a write the child missed) in the child's
// dirty log. It returns nil when the caller may carry on (the failure is
// absorbed), or the error to fail the I/O with.
func (n *Nexus) childFailed(in *instance, cause error, rng *[2]int64) error {
	ev := EvIOError
	if errors.Is(cause, blockdev.ErrTimeout) {
		ev = EvTimeout
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	c := in.c
	if c.inst == in && (c.state == ChildOpen || c.state == ChildRebuilding) {
		last := c.state == ChildOpen && n.healthyCountLocked() == 1
		out := Step(Input{State: c.state, Event: ev, LastHealthy: last})
		if out.Err != nil {
			return fmt.Errorf("nexus %s: last healthy child %s failed (%v), not faulted: %w", n.cfg.Name, c.uri, cause, blockdev.ErrIO)
		}
		n.log.Warn("faulting child", "child", c.uri, "event", ev, "err", cause)
		if err := n.applyLocked(context.Background(), c, out, fmt.Sprintf("%s: %v", ev, cause), nil); err != nil {
			return err
		}
	}
	if n.broken != nil {
		return n.broken
	}
	if rng != nil && c.log != nil && (c.state == ChildFaulted || c.state == ChildOffline) {
		if err := c.log.Mark(rng[0], rng[1]); err != nil {
			return n.breakOn(err)
		}
	}
	return nil
}
