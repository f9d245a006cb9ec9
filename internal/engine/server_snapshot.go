package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/pool"
)

// snapshotServer implements SnapshotService over pool snapshots.
type snapshotServer struct {
	enginev1.UnimplementedSnapshotServiceServer
	e *Engine
}

func snapshotInfo(poolName string, si pool.SnapshotInfo) *enginev1.Snapshot {
	return &enginev1.Snapshot{
		Pool: poolName, Name: si.Name, Uuid: si.UUID, Source: si.Source,
		Size: uint64(si.Size), Allocated: uint64(si.ExclusiveBytes), Referenced: uint64(si.ReferencedBytes),
		Clones: slices.Clone(si.Clones), CreateTimeUnixNano: si.Created.UnixNano(),
	}
}

func (e *Engine) findSnapshotInfo(pe *poolEntry, name string) (pool.SnapshotInfo, error) {
	for _, si := range pe.p.Snapshots() {
		if si.Name == name || si.UUID == name {
			return si, nil
		}
	}
	return pool.SnapshotInfo{}, fmt.Errorf("snapshot %q %w in pool %q", name, ErrNotFound, pe.name)
}

func (s *snapshotServer) CreateSnapshot(ctx context.Context, req *enginev1.CreateSnapshotRequest) (*enginev1.CreateSnapshotResponse, error) {
	e := s.e
	if err := checkName("snapshot", req.GetName()); err != nil {
		return nil, err
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	pe, r, err := e.findReplica(req.GetPool(), req.GetReplica())
	if err != nil {
		return nil, err
	}
	si, err := e.snapshotReplicaLocked(ctx, pe, r.Info().Name, req.GetName(), req.GetUuid())
	if err != nil {
		return nil, err
	}
	return &enginev1.CreateSnapshotResponse{Snapshot: si}, nil
}

func (e *Engine) snapshotReplicaLocked(ctx context.Context, pe *poolEntry, replica, name, uuid string) (*enginev1.Snapshot, error) {
	if _, err := pe.p.CreateSnapshot(ctx, replica, name, uuid); err != nil {
		return nil, fmt.Errorf("snapshot %q of replica %q: %w", name, replica, err)
	}
	si, err := e.findSnapshotInfo(pe, name)
	if err != nil {
		return nil, err
	}
	e.log.Info("snapshot created", "pool", pe.name, "replica", replica, "snapshot", name)
	return snapshotInfo(pe.name, si), nil
}

func (s *snapshotServer) CloneSnapshot(ctx context.Context, req *enginev1.CloneSnapshotRequest) (*enginev1.CloneSnapshotResponse, error) {
	e := s.e
	if err := checkName("replica", req.GetCloneName()); err != nil {
		return nil, err
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	pe, err := e.poolByName(req.GetPool())
	if err != nil {
		return nil, err
	}
	r, err := pe.p.CloneSnapshot(ctx, req.GetSnapshot(), req.GetCloneName(), req.GetUuid())
	if err != nil {
		return nil, fmt.Errorf("clone %q of snapshot %q: %w", req.GetCloneName(), req.GetSnapshot(), err)
	}
	e.log.Info("clone created", "pool", pe.name, "snapshot", req.GetSnapshot(), "clone", req.GetCloneName())
	return &enginev1.CloneSnapshotResponse{Replica: e.replicaInfo(pe.name, r)}, nil
}

func (s *snapshotServer) DestroySnapshot(ctx context.Context, req *enginev1.DestroySnapshotRequest) (*enginev1.DestroySnapshotResponse, error) {
	e := s.e
	e.opMu.Lock()
	defer e.opMu.Unlock()
	pe, err := e.poolByName(req.GetPool())
	if err != nil {
		return nil, err
	}
	if err := pe.p.DestroySnapshot(ctx, req.GetName(), req.GetForce()); err != nil {
		if errors.Is(err, pool.ErrNotFound) {
			return nil, fmt.Errorf("snapshot %q %w in pool %q", req.GetName(), ErrNotFound, pe.name)
		}
		return nil, fmt.Errorf("destroy snapshot %q: %w", req.GetName(), err)
	}
	e.log.Info("snapshot destroyed", "pool", pe.name, "snapshot", req.GetName())
	return &enginev1.DestroySnapshotResponse{}, nil
}

func (s *snapshotServer) ListSnapshots(_ context.Context, req *enginev1.ListSnapshotsRequest) (*enginev1.ListSnapshotsResponse, error) {
	e := s.e
	var pools []*poolEntry
	if req.GetPool() != "" {
		pe, err := e.poolByName(req.GetPool())
		if err != nil {
			return nil, err
		}
		pools = append(pools, pe)
	} else {
		e.mu.RLock()
		for _, pe := range e.mu.pools {
			if pe.p != nil {
				pools = append(pools, pe)
			}
		}
		e.mu.RUnlock()
	}
	resp := &enginev1.ListSnapshotsResponse{}
	for _, pe := range pools {
		for _, si := range pe.p.Snapshots() {
			resp.Snapshots = append(resp.Snapshots, snapshotInfo(pe.name, si))
		}
	}
	slices.SortFunc(resp.Snapshots, func(a, b *enginev1.Snapshot) int {
		if c := cmpStr(a.Pool, b.Pool); c != 0 {
			return c
		}
		return cmpStr(a.Name, b.Name)
	})
	return resp, nil
}

// CreateNexusSnapshot pauses the nexus (so every child holds the same
// data), snapshots each child replica of this engine as NAME-REPLICA, and
// resumes. Nexuses with remote children are refused for now.
func (s *snapshotServer) CreateNexusSnapshot(ctx context.Context, req *enginev1.CreateNexusSnapshotRequest) (*enginev1.CreateNexusSnapshotResponse, error) {
	e := s.e
	if err := checkName("snapshot", req.GetName()); err != nil {
		return nil, err
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	ne, err := e.nexusByName(req.GetNexus())
	if err != nil {
		return nil, err
	}
	type target struct {
		pe      *poolEntry
		replica string
	}
	var targets []target
	for _, c := range ne.n.Status().Children {
		u, err := blockdev.ParseURI(c.URI)
		if err != nil || (u.Scheme != "bdev" && u.Scheme != "loopback") {
			return nil, fmt.Errorf("nexus %q: child %q is not a replica of this engine: %w", ne.rec.Name, c.URI, ErrUnimplemented)
		}
		pe, r, err := e.findReplica("", strings.Trim(u.Host+u.Path, "/"))
		if err != nil {
			return nil, fmt.Errorf("nexus %q: child %q: %w", ne.rec.Name, c.URI, err)
		}
		targets = append(targets, target{pe, r.Info().Name})
	}
	// Pause waits for in-flight I/O; every acknowledged write is then on
	// every child, and the pool snapshot is crash-consistent per replica.
	if err := ne.n.Pause(ctx); err != nil {
		return nil, fmt.Errorf("nexus %q: pause: %w", ne.rec.Name, err)
	}
	defer ne.n.Resume()
	resp := &enginev1.CreateNexusSnapshotResponse{}
	for _, t := range targets {
		si, err := e.snapshotReplicaLocked(ctx, t.pe, t.replica, req.GetName()+"-"+t.replica, "")
		if err != nil {
			return nil, err
		}
		resp.Snapshots = append(resp.Snapshots, si)
	}
	return resp, nil
}
