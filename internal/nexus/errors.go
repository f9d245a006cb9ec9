package nexus

import (
	"errors"
	"fmt"

	"github.com/kura-io/kura/internal/blockdev"
)

// Errors returned (wrapped) by the nexus. I/O errors additionally wrap a
// blockdev sentinel so device users can classify them.
var (
	// ErrLastHealthy is returned when an operation would fault, offline or
	// remove the last healthy child.
	ErrLastHealthy = errors.New("nexus: refusing to lose the last healthy child")
	// ErrChildNotFound is returned for a URI that is not a child.
	ErrChildNotFound = errors.New("nexus: no such child")
	// ErrChildExists is returned when adding a URI that is already a child.
	ErrChildExists = errors.New("nexus: child already exists")
	// ErrChildBusy is returned when a child cannot be onlined because
	// abandoned (timed-out) I/O to its previous instance has not returned.
	ErrChildBusy = errors.New("nexus: child still has abandoned I/O in flight")
	// ErrInvalidState is returned for a request that does not apply to the
	// child's or nexus' current state.
	ErrInvalidState = errors.New("nexus: invalid request in current state")
	// ErrShutdown is returned by every operation on a nexus that was shut
	// down or destroyed. It wraps blockdev.ErrClosed.
	ErrShutdown = fmt.Errorf("nexus: shut down: %w", blockdev.ErrClosed)
	// ErrNoHealthy is returned for I/O when no healthy child is left. It
	// wraps blockdev.ErrIO.
	ErrNoHealthy = fmt.Errorf("nexus: no healthy child: %w", blockdev.ErrIO)
	// ErrNoRebuild is returned by rebuild control for a child without a
	// running rebuild.
	ErrNoRebuild = errors.New("nexus: no rebuild running for child")
	// ErrNoInfo is returned by InfoStore.Load when nothing is stored.
	ErrNoInfo = errors.New("nexus: no stored nexus info")
	// ErrConfig is returned for an invalid Config or child geometry.
	ErrConfig = errors.New("nexus: invalid configuration")
)
