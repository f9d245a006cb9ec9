package nexus

import (
	"context"
	"fmt"
	"time"
)

// ReasonNotRebuilt is the reason shown for a child added without rebuild
// whose rebuild has not been started.
const ReasonNotRebuilt = "added without rebuild: rebuild not started"

// AddChild opens uri, adds it as a new child and starts a full rebuild
// onto it. The child is recorded unhealthy until the rebuild completes.
func (n *Nexus) AddChild(ctx context.Context, uri string) error {
	return n.addChild(ctx, uri, true)
}

// AddChildNoRebuild adds uri as an OutOfSync child without starting a
// rebuild (the reference's `nexus add --norebuild`). Its device is opened
// only to check its geometry, then closed. The child takes no reads and no
// writes, does not count as healthy, and is persisted out of sync, so a
// restart keeps it so. StartRebuild (or OnlineChild) later starts a full
// rebuild onto it.
func (n *Nexus) AddChildNoRebuild(ctx context.Context, uri string) error {
	return n.addChild(ctx, uri, false)
}

func (n *Nexus) addChild(ctx context.Context, uri string, rebuild bool) error {
	n.mu.Lock()
	if err := n.usableLocked(); err != nil {
		n.mu.Unlock()
		return err
	}
	if c, _ := n.findLocked(uri); c != nil {
		n.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrChildExists, uri)
	}
	n.mu.Unlock()
	dev, err := n.cfg.Opener(ctx, uri)
	if err != nil {
		return fmt.Errorf("nexus %s: add child %s: %w", n.cfg.Name, uri, err)
	}
	if err := n.checkChild(uri, dev); err != nil {
		dev.Close()
		return err
	}
	if !rebuild {
		// No I/O will reach it before StartRebuild reopens it.
		if err := dev.Close(); err != nil {
			n.log.Warn("closing out-of-sync child", "child", uri, "err", err)
		}
		dev = nil
	}
	if err := n.gate.pause(ctx); err != nil {
		if dev != nil {
			dev.Close()
		}
		return err
	}
	defer n.gate.resume()
	n.mu.Lock()
	defer n.mu.Unlock()
	fail := func(err error) error {
		if dev != nil {
			dev.Close()
		}
		return err
	}
	if err := n.usableLocked(); err != nil {
		return fail(err)
	}
	if c, _ := n.findLocked(uri); c != nil {
		return fail(fmt.Errorf("%w: %s", ErrChildExists, uri))
	}
	c := &child{uri: uri, state: ChildOutOfSync, reason: ReasonNotRebuilt, since: time.Now()}
	if rebuild {
		c.state, c.reason = ChildFaulted, "new child"
	}
	n.children = append(n.children, c)
	if err := n.persistLocked(ctx, false); err != nil {
		n.children = n.children[:len(n.children)-1]
		return fail(err)
	}
	if !rebuild {
		n.log.Info("child added out of sync, rebuild not started", "child", uri)
		return nil
	}
	return n.applyLocked(ctx, c, Step(Input{State: c.state, Event: EvOnline}), "", dev)
}

// OnlineChild reopens a Faulted, Offline or OutOfSync child and rebuilds
// it: only the logged dirty segments when a dirty log exists, else
// everything. On a child that is open or rebuilding it does nothing.
func (n *Nexus) OnlineChild(ctx context.Context, uri string) error {
	return n.reopen(ctx, uri, EvOnline)
}

// StartRebuild starts the rebuild of a child that needs one: an OutOfSync
// child (added without rebuild) gets a full rebuild; a Faulted or Offline
// child is rebuilt as by OnlineChild (partially when logged). A healthy
// child, or one already rebuilding, is refused with ErrInvalidState; an
// unknown URI with ErrChildNotFound.
func (n *Nexus) StartRebuild(ctx context.Context, uri string) error {
	return n.reopen(ctx, uri, EvStartRebuild)
}

// reopen opens the device of an absent child and applies ev (EvOnline or
// EvStartRebuild), which attaches it write-only and starts its rebuild.
func (n *Nexus) reopen(ctx context.Context, uri string, ev Event) error {
	n.mu.Lock()
	c, err := n.reopenableLocked(uri, ev)
	n.mu.Unlock()
	if err != nil || c == nil {
		return err
	}
	dev, err := n.cfg.Opener(ctx, uri)
	if err != nil {
		return fmt.Errorf("nexus %s: %s child %s: %w", n.cfg.Name, ev, uri, err)
	}
	if err := n.checkChild(uri, dev); err != nil {
		dev.Close()
		return err
	}
	if err := n.gate.pause(ctx); err != nil {
		dev.Close()
		return err
	}
	defer n.gate.resume()
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err = n.reopenableLocked(uri, ev)
	if err != nil || c == nil {
		dev.Close()
		return err
	}
	return n.applyLocked(ctx, c, Step(Input{State: c.state, Event: ev}), "", dev)
}

// reopenableLocked returns the child if ev would reopen it, nil (no error)
// if ev is a no-op for it, or the state machine's refusal.
func (n *Nexus) reopenableLocked(uri string, ev Event) (*child, error) {
	if err := n.usableLocked(); err != nil {
		return nil, err
	}
	c, _ := n.findLocked(uri)
	if c == nil {
		return nil, fmt.Errorf("%w: %s", ErrChildNotFound, uri)
	}
	out := Step(Input{State: c.state, Event: ev})
	if out.Err != nil {
		return nil, fmt.Errorf("%w: %s", out.Err, uri)
	}
	if out.Actions&ActOpenDevice == 0 {
		return nil, nil
	}
	if c.busyOld() {
		return nil, fmt.Errorf("%w: %s", ErrChildBusy, uri)
	}
	return c, nil
}

// FaultChild faults a child by request, recording reason.
func (n *Nexus) FaultChild(ctx context.Context, uri, reason string) error {
	return n.request(ctx, uri, EvFault, "faulted by request: "+reason)
}

// OfflineChild takes a child offline; writes it misses are logged so
// OnlineChild can rebuild only those.
func (n *Nexus) OfflineChild(ctx context.Context, uri string) error {
	return n.request(ctx, uri, EvOffline, "offline by request")
}

// RemoveChild removes a child (never the last healthy one) and deletes
// its dirty log.
func (n *Nexus) RemoveChild(ctx context.Context, uri string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.requestLocked(ctx, uri, EvRemove, "removed"); err != nil {
		return err
	}
	_, i := n.findLocked(uri)
	n.children = append(n.children[:i], n.children[i+1:]...)
	n.publishLocked()
	return nil
}

func (n *Nexus) request(ctx context.Context, uri string, ev Event, reason string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.requestLocked(ctx, uri, ev, reason)
}

func (n *Nexus) requestLocked(ctx context.Context, uri string, ev Event, reason string) error {
	if err := n.usableLocked(); err != nil {
		return err
	}
	c, _ := n.findLocked(uri)
	if c == nil {
		return fmt.Errorf("%w: %s", ErrChildNotFound, uri)
	}
	last := c.state == ChildOpen && n.healthyCountLocked() == 1
	out := Step(Input{State: c.state, Event: ev, LastHealthy: last})
	if out.Err != nil {
		return fmt.Errorf("nexus %s: %s child %s: %w", n.cfg.Name, ev, uri, out.Err)
	}
	return n.applyLocked(ctx, c, out, reason, nil)
}

func (n *Nexus) usableLocked() error {
	if n.stopping {
		return ErrShutdown
	}
	return nil
}
