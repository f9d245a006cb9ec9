package engine

import (
	"context"
	"errors"
	"io/fs"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nbd"
	"github.com/kura-io/kura/internal/nexus"
	"github.com/kura-io/kura/internal/nvme"
	"github.com/kura-io/kura/internal/nvmetcp"
	"github.com/kura-io/kura/internal/pool"
)

// Errors returned (wrapped) by the engine. Messages are phrased so that
// fmt.Errorf("pool %q %w", name, ErrNotFound) reads well.
var (
	// ErrNotFound is returned when a named pool, replica, bdev or share
	// does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists is returned by a create whose name is taken by an object
	// with different arguments.
	ErrExists = errors.New("already exists")
	// ErrInvalidArgument is returned for malformed requests.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrInUse is returned when a disk or object is held by something
	// else (a pool on the disk, an open bdev, a share, a nexus).
	ErrInUse = errors.New("in use")
	// ErrUnimplemented is returned by features whose package is not built
	// into this engine yet.
	ErrUnimplemented = errors.New("not implemented in this engine")
	// ErrNotSnapshottable is returned for a nexus snapshot when a healthy
	// child is a device without snapshots (a plain file or bdev).
	ErrNotSnapshottable = errors.New("cannot be snapshotted")
	// ErrUnavailable is returned when a frontend (NVMe/TCP target, NBD
	// server) is not running.
	ErrUnavailable = errors.New("unavailable")
)

// codeTable maps error classes to gRPC codes, checked in order with
// errors.Is (specific errors before the general ones they wrap). It is the
// only place errors become status codes.
var codeTable = []struct {
	err  error
	code codes.Code
}{
	// pool.ErrAlreadyPool wraps pool.ErrExists, but a disk that already
	// holds a pool is a precondition failure, not a name clash.
	{pool.ErrAlreadyPool, codes.FailedPrecondition},
	{ErrNotFound, codes.NotFound},
	{pool.ErrNotFound, codes.NotFound},
	{blockdev.ErrNotFound, codes.NotFound},
	{nbd.ErrExportNotFound, codes.NotFound},
	{nvmetcp.ErrNotFound, codes.NotFound},
	{nexus.ErrChildNotFound, codes.NotFound},
	{nvmetcp.ErrSnapshotNotFound, codes.NotFound},
	{nexus.ErrNoRebuild, codes.NotFound},
	{fs.ErrNotExist, codes.NotFound},

	{ErrExists, codes.AlreadyExists},
	{pool.ErrExists, codes.AlreadyExists},
	{nbd.ErrExportExists, codes.AlreadyExists},
	{nvmetcp.ErrExists, codes.AlreadyExists},
	{nexus.ErrChildExists, codes.AlreadyExists},
	{nvmetcp.ErrSnapshotExists, codes.AlreadyExists},

	{ErrInvalidArgument, codes.InvalidArgument},
	{pool.ErrInvalidArgument, codes.InvalidArgument},
	{blockdev.ErrInvalidURI, codes.InvalidArgument},
	{blockdev.ErrUnknownScheme, codes.InvalidArgument},
	{blockdev.ErrMisaligned, codes.InvalidArgument},
	{blockdev.ErrOutOfRange, codes.InvalidArgument},
	{nbd.ErrInvalidExport, codes.InvalidArgument},
	{nvme.ErrInvalidNQN, codes.InvalidArgument},
	{nvmetcp.ErrInvalidConfig, codes.InvalidArgument},
	{nexus.ErrConfig, codes.InvalidArgument},
	{nvmetcp.ErrSnapshotInvalid, codes.InvalidArgument},

	{pool.ErrNoSpace, codes.ResourceExhausted},
	{blockdev.ErrNoSpace, codes.ResourceExhausted},

	{ErrInUse, codes.FailedPrecondition},
	{ErrNotSnapshottable, codes.FailedPrecondition},
	{pool.ErrInUse, codes.FailedPrecondition},
	{pool.ErrHasDependents, codes.FailedPrecondition},
	{nvmetcp.ErrSnapshotHasDependents, codes.FailedPrecondition},
	{pool.ErrNotAPool, codes.FailedPrecondition},
	{blockdev.ErrBusy, codes.FailedPrecondition},
	{nexus.ErrLastHealthy, codes.FailedPrecondition},
	{nexus.ErrChildBusy, codes.FailedPrecondition},
	{nexus.ErrInvalidState, codes.FailedPrecondition},
	{nexus.ErrShutdown, codes.FailedPrecondition},
	{blockdev.ErrReadOnly, codes.FailedPrecondition},
	{nvmetcp.ErrSnapshotDenied, codes.FailedPrecondition},
	{fs.ErrPermission, codes.PermissionDenied},

	{pool.ErrCorrupt, codes.DataLoss},

	{ErrUnimplemented, codes.Unimplemented},
	{nvmetcp.ErrSnapshotUnsupported, codes.Unimplemented},
	{ErrUnavailable, codes.Unavailable},
	{nexus.ErrNoHealthy, codes.Unavailable},
	{nbd.ErrServerClosed, codes.Unavailable},
	{nvmetcp.ErrClosed, codes.Unavailable},
	{blockdev.ErrClosed, codes.Unavailable},
	{blockdev.ErrTimeout, codes.DeadlineExceeded},

	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// codeOf classifies err.
func codeOf(err error) codes.Code {
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return s.Code()
	}
	for _, e := range codeTable {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return codes.Internal
}

// toStatus converts an engine error to a gRPC status error. nil stays nil.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}
