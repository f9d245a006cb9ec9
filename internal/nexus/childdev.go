package nexus

import (
	"fmt"

	"github.com/kura-io/kura/internal/blockdev"
)

// ChildDevice returns the open device of a healthy child, so a caller can
// use features of the child's device type (e.g. an nvmf:// child's
// snapshot command) while the nexus is paused. The nexus keeps owning the
// device: the caller must not close it, and it may be closed under the
// caller if the child faults (its methods then fail with
// blockdev.ErrClosed). ErrChildNotFound for an unknown URI,
// ErrInvalidState when the child is not healthy.
func (n *Nexus) ChildDevice(uri string) (blockdev.Device, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.children {
		if c.uri != uri {
			continue
		}
		if c.state != ChildOpen || c.inst == nil {
			return nil, fmt.Errorf("%w: child %s is %s, not healthy", ErrInvalidState, uri, c.state)
		}
		return c.inst.dev, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrChildNotFound, uri)
}
