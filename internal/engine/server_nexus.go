package engine

import (
	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// nexusServer implements NexusService. Until internal/nexus is wired in,
// every call returns UNIMPLEMENTED (from the embedded type).
type nexusServer struct {
	enginev1.UnimplementedNexusServiceServer
	e *Engine
}

// rebuildServer implements RebuildService; UNIMPLEMENTED until
// internal/rebuild is wired in.
type rebuildServer struct {
	enginev1.UnimplementedRebuildServiceServer
	e *Engine
}

// snapshotServer implements SnapshotService; UNIMPLEMENTED until pool
// snapshots are wired in.
type snapshotServer struct {
	enginev1.UnimplementedSnapshotServiceServer
	e *Engine
}
