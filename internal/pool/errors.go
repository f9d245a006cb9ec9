package pool

import (
	"errors"
	"fmt"

	"github.com/kura-io/kura/internal/blockdev"
)

// Errors returned (wrapped with %w) by this package. Classify with errors.Is.
var (
	// ErrNotFound is returned when a replica or snapshot does not exist.
	ErrNotFound = errors.New("pool: not found")
	// ErrExists is returned when a name or UUID is taken by something
	// different from what was asked for.
	ErrExists = errors.New("pool: already exists")
	// ErrAlreadyPool is returned by Create when the device holds a pool
	// label. It wraps ErrExists.
	ErrAlreadyPool = fmt.Errorf("%w: device already holds a pool", ErrExists)
	// ErrNotAPool is returned by Import and Probe when no pool label exists.
	ErrNotAPool = errors.New("pool: device holds no pool")
	// ErrCorrupt is returned when on-disk metadata fails verification.
	ErrCorrupt = errors.New("pool: metadata corrupt")
	// ErrNoSpace is returned when the pool has no free cluster. It is the
	// blockdev sentinel, so errors.Is(err, blockdev.ErrNoSpace) holds too.
	ErrNoSpace = blockdev.ErrNoSpace
	// ErrInUse is returned when an operation conflicts with in-flight work.
	ErrInUse = errors.New("pool: in use")
	// ErrHasDependents is returned when a snapshot still has clones.
	ErrHasDependents = errors.New("pool: snapshot has dependents")
	// ErrInvalidArgument is returned for bad names, sizes, UUIDs or cluster sizes.
	ErrInvalidArgument = errors.New("pool: invalid argument")
	// ErrClosed is returned after Export, Close or Destroy, and for I/O on a
	// destroyed replica. It is the blockdev sentinel.
	ErrClosed = blockdev.ErrClosed
)
