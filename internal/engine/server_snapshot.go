package engine

import (
	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// snapshotServer implements SnapshotService; UNIMPLEMENTED until pool
// snapshots are wired in.
type snapshotServer struct {
	enginev1.UnimplementedSnapshotServiceServer
	e *Engine
}
