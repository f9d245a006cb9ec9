package nexus

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/rebuild"
)

// infoLocked is the NexusInfo of the current children.
func (n *Nexus) infoLocked(clean bool) Info {
	in := Info{CleanShutdown: clean}
	for _, c := range n.children {
		if c.state != ChildClosed {
			in.Children = append(in.Children, ChildInfo{URI: c.uri, Healthy: c.state == ChildOpen,
				OutOfSync: c.state == ChildOutOfSync})
		}
	}
	return in
}

// persistLocked stores NexusInfo. A failure breaks the nexus: without a
// durable record of which children are stale, acknowledging I/O could
// later serve stale data, so I/O fails instead (consistency over
// availability).
func (n *Nexus) persistLocked(ctx context.Context, clean bool) error {
	if err := n.cfg.Store.Store(ctx, n.cfg.UUID, n.infoLocked(clean)); err != nil {
		if n.broken == nil {
			n.broken = fmt.Errorf("nexus %s: persisting nexus info failed: %v: %w", n.cfg.Name, err, blockdev.ErrIO)
			n.isBroken.Store(true)
			n.log.Error("nexus info not persisted: failing I/O", "err", err)
		}
		return n.broken
	}
	return nil
}

// startLogLocked opens (or reopens) the dirty log of c.
func (n *Nexus) startLogLocked(c *child) error {
	if c.log != nil {
		return nil
	}
	p := logPath(n.cfg.LogDir, n.cfg.UUID, c.uri)
	l, _, err := rebuild.OpenLog(p, n.cfg.SegmentSize, n.nseg)
	if errors.Is(err, rebuild.ErrLogCorrupt) || errors.Is(err, rebuild.ErrLogMismatch) {
		// What the child missed is unknown: drop the log so the child gets
		// a full rebuild (a fresh, empty log would under-copy) and so the
		// bad file does not fault the child again on every restart.
		if rerr := os.Remove(p); rerr != nil {
			n.log.Warn("removing unusable dirty log", "path", p, "err", rerr)
		}
		return err
	}
	if err != nil {
		return err
	}
	c.log = l
	return nil
}

// resyncLogLocked gives c a dirty log holding segs (durably), so its next
// rebuild copies exactly those. On failure c has no log (full rebuild).
func (n *Nexus) resyncLogLocked(c *child, segs *rebuild.Bitmap) error {
	if err := n.startLogLocked(c); err != nil {
		return err
	}
	if err := c.log.MarkBitmap(segs); err != nil {
		c.log.Remove()
		c.log = nil
		return err
	}
	return nil
}
