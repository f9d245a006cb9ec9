package nbd

import (
	"errors"

	"github.com/kura-io/kura/internal/blockdev"
)

// Errors returned (wrapped) by the server API. Classify with errors.Is.
var (
	// ErrExportExists is returned by AddExport when the name is taken.
	ErrExportExists = errors.New("nbd: export already exists")
	// ErrExportNotFound is returned by RemoveExport for an unknown name.
	ErrExportNotFound = errors.New("nbd: export not found")
	// ErrInvalidExport is returned by AddExport for a bad name, device or
	// allow-list entry.
	ErrInvalidExport = errors.New("nbd: invalid export")
	// ErrServerClosed is returned by methods called after Close, and by
	// Start when called twice.
	ErrServerClosed = errors.New("nbd: server closed")
	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("nbd: server already started")
)

// errProtocol marks a client protocol violation that ends the connection.
var errProtocol = errors.New("nbd: protocol violation")

// errnoFor maps a device error to an NBD error value. write selects ENOSPC
// over EINVAL for ranges past the end, as the protocol asks.
func errnoFor(err error, write bool) uint32 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, blockdev.ErrOutOfRange):
		if write {
			return errNoSpc
		}
		return errInval
	case errors.Is(err, blockdev.ErrMisaligned):
		return errInval
	case errors.Is(err, blockdev.ErrNoSpace):
		return errNoSpc
	case errors.Is(err, blockdev.ErrReadOnly):
		return errPerm
	case errors.Is(err, blockdev.ErrClosed):
		return errShutdown
	default:
		return errIO
	}
}
