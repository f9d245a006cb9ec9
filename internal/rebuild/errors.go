package rebuild

import "errors"

// Errors returned (wrapped) by this package.
var (
	// ErrStopped is returned by Job.Wait when the job was stopped by Stop.
	ErrStopped = errors.New("rebuild: stopped")
	// ErrBadState is returned when a control request does not apply to the
	// job's current state (e.g. Resume of a running job).
	ErrBadState = errors.New("rebuild: invalid request in current state")
	// ErrLogMismatch is returned when a dirty-log file on disk was written for
	// a different geometry (segment size or count) and cannot be used.
	ErrLogMismatch = errors.New("rebuild: dirty log geometry mismatch")
	// ErrLogCorrupt is returned when a dirty-log file fails its checksum.
	ErrLogCorrupt = errors.New("rebuild: dirty log corrupt")
)
