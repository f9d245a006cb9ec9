package nexus

import (
	"context"
	"fmt"
)

// AddChild opens uri, adds it as a new child and starts a full rebuild
// onto it. The child is recorded unhealthy until the rebuild completes.
func (n *Nexus) AddChild(ctx context.Context, uri string) error {
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
	if err := n.gate.pause(ctx); err != nil {
		dev.Close()
		return err
	}
	defer n.gate.resume()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usableLocked(); err != nil {
		dev.Close()
		return err
	}
	if c, _ := n.findLocked(uri); c != nil {
		dev.Close()
		return fmt.Errorf("%w: %s", ErrChildExists, uri)
	}
	c := &child{uri: uri, state: ChildFaulted, reason: "new child"}
	n.children = append(n.children, c)
	if err := n.persistLocked(ctx, false); err != nil {
		n.children = n.children[:len(n.children)-1]
		dev.Close()
		return err
	}
	return n.applyLocked(ctx, c, Step(Input{State: c.state, Event: EvOnline}), "", dev)
}

// OnlineChild reopens a Faulted or Offline child and rebuilds it: only
// the logged dirty segments when a dirty log exists, else everything.
func (n *Nexus) OnlineChild(ctx context.Context, uri string) error {
	n.mu.Lock()
	c, err := n.onlineableLocked(uri)
	n.mu.Unlock()
	if err != nil || c == nil {
		return err
	}
	dev, err := n.cfg.Opener(ctx, uri)
	if err != nil {
		return fmt.Errorf("nexus %s: online child %s: %w", n.cfg.Name, uri, err)
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
	c, err = n.onlineableLocked(uri)
	if err != nil || c == nil {
		dev.Close()
		return err
	}
	return n.applyLocked(ctx, c, Step(Input{State: c.state, Event: EvOnline}), "", dev)
}

// onlineableLocked returns the child if it can be onlined, nil (no error)
// if it is already open or rebuilding.
func (n *Nexus) onlineableLocked(uri string) (*child, error) {
	if err := n.usableLocked(); err != nil {
		return nil, err
	}
	c, _ := n.findLocked(uri)
	if c == nil {
		return nil, fmt.Errorf("%w: %s", ErrChildNotFound, uri)
	}
	if c.state == ChildOpen || c.state == ChildRebuilding {
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
