package nexus

import (
	"context"
	"fmt"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// applyLocked performs a state-machine Output for c, in action order.
// dev is the freshly opened device for ActOpenDevice (opened by the
// caller before taking the lock, since opening may be slow). The caller
// holds n.mu and, when ActAttachWriteOnly is present, has paused I/O so
// no write can miss the new rebuild destination.
func (n *Nexus) applyLocked(ctx context.Context, c *child, out Output, reason string, dev blockdev.Device) error {
	a := out.Actions
	c.state, c.since = out.State, time.Now()
	switch out.State {
	case ChildOpen, ChildRebuilding:
		c.reason = ""
	default:
		if reason != "" {
			c.reason = reason
		}
	}
	if a&ActCancelRebuild != 0 && c.job != nil {
		c.job.Stop()
		c.job = nil
	}
	if a&ActStartLog != 0 {
		if err := n.startLogLocked(c); err != nil {
			n.log.Warn("no dirty log: next rebuild is full", "child", c.uri, "err", err)
		}
	}
	if a&ActDetach != 0 {
		n.publishLocked()
	}
	if a&ActPersist != 0 {
		if err := n.persistLocked(ctx, false); err != nil {
			return err
		}
	}
	if a&ActCloseDevice != 0 && c.inst != nil {
		in := c.inst
		c.inst = nil
		c.old = append(c.old, in)
		grace := n.cfg.ChildTimeout
		n.bg.Go(func() { in.close(grace) })
	}
	if a&ActDropLog != 0 && c.log != nil {
		if err := c.log.Remove(); err != nil {
			n.log.Warn("removing dirty log", "child", c.uri, "err", err)
		}
		c.log = nil
	}
	if a&ActOpenDevice != 0 {
		if dev == nil {
			return fmt.Errorf("%w: online without a device", ErrInvalidState)
		}
		c.inst = newInstance(c, dev, n.cfg.QueueDepth)
	}
	if a&ActStartRebuild != 0 {
		if err := n.startRebuildLocked(c); err != nil {
			// Could not start: back to faulted, device closed.
			n.log.Warn("rebuild not started", "child", c.uri, "err", err)
			return n.applyLocked(ctx, c, Output{State: ChildFaulted, Actions: ActDetach | ActCloseDevice},
				"rebuild failed to start: "+err.Error(), nil)
		}
	}
	if a&(ActAttachWriteOnly|ActAttachHealthy) != 0 {
		n.publishLocked()
	}
	return nil
}
