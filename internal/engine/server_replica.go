package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/pool"
)

func (s *apiServer) CreateReplica(ctx context.Context, req *enginev1.CreateReplicaRequest) (*enginev1.CreateReplicaResponse, error) {
	r, err := s.e.CreateReplica(ctx, req)
	if err != nil {
		return nil, err
	}
	return &enginev1.CreateReplicaResponse{Replica: r}, nil
}

// CreateReplica creates a replica in a pool (and shares it when asked).
// Repeating it with the same arguments returns the existing replica.
func (e *Engine) CreateReplica(ctx context.Context, req *enginev1.CreateReplicaRequest) (*enginev1.Replica, error) {
	if err := checkName("replica", req.GetName()); err != nil {
		return nil, err
	}
	if req.GetSize() == 0 {
		return nil, fmt.Errorf("%w: replica size must be greater than zero", ErrInvalidArgument)
	}
	if req.GetSize() > 1<<62 {
		return nil, fmt.Errorf("%w: replica size %d too large", ErrInvalidArgument, req.GetSize())
	}
	if req.GetShare() != nil { // protocol NONE in ShareOptions means the default, NVMF
		if err := checkShareOptions(req.GetShare()); err != nil {
			return nil, err
		}
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	pe, err := e.poolByName(req.GetPool())
	if err != nil {
		return nil, err
	}
	// A replica name is unique in the engine: bdev:///NAME must resolve.
	e.mu.RLock()
	for _, other := range e.mu.pools {
		if other == pe || other.p == nil {
			continue
		}
		if _, err := other.p.Replica(req.GetName()); err == nil {
			e.mu.RUnlock()
			return nil, fmt.Errorf("replica %q %w in pool %q", req.GetName(), ErrExists, other.name)
		}
	}
	if _, ok := e.mu.bdevs[req.GetName()]; ok {
		e.mu.RUnlock()
		return nil, fmt.Errorf("%w: a bdev is named %q", ErrExists, req.GetName())
	}
	e.mu.RUnlock()

	_, existed := pe.p.Replica(req.GetName())
	r, err := pe.p.CreateReplica(ctx, req.GetName(), pool.ReplicaOptions{
		Size: int64(req.GetSize()), Thin: req.GetThin(), UUID: req.GetUuid(),
	})
	if err != nil {
		return nil, fmt.Errorf("create replica %q in pool %q: %w", req.GetName(), pe.name, err)
	}
	info := r.Info()
	if so := req.GetShare(); so != nil {
		rec := shareRecordFor("replica", pe.name, info.UUID, so)
		if _, err := e.shareLocked(ctx, rec); err != nil {
			if existed != nil { // the replica is new: undo, nothing changed
				if derr := pe.p.DestroyReplica(ctx, info.UUID); derr != nil {
					e.log.Error("undo replica create", "replica", info.Name, "err", derr)
				}
			}
			return nil, err
		}
		if err := e.save(); err != nil {
			return nil, err
		}
	}
	e.log.Info("replica created", "pool", pe.name, "replica", info.Name, "size", info.Size, "thin", info.Thin)
	return e.replicaInfo(pe.name, r), nil
}

// findReplica finds a replica by name or UUID, in pool poolName or (when
// empty) in every pool.
func (e *Engine) findReplica(poolName, name string) (*poolEntry, *pool.Replica, error) {
	if name == "" {
		return nil, nil, fmt.Errorf("%w: replica name is empty", ErrInvalidArgument)
	}
	if poolName != "" {
		pe, err := e.poolByName(poolName)
		if err != nil {
			return nil, nil, err
		}
		r, err := pe.p.Replica(name)
		if err != nil {
			if errors.Is(err, pool.ErrNotFound) {
				return nil, nil, fmt.Errorf("replica %q %w in pool %q", name, ErrNotFound, poolName)
			}
			return nil, nil, err
		}
		return pe, r, nil
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, pe := range e.mu.pools {
		if pe.p == nil {
			continue
		}
		if r, err := pe.p.Replica(name); err == nil {
			return pe, r, nil
		}
	}
	return nil, nil, fmt.Errorf("replica %q %w", name, ErrNotFound)
}

func (s *apiServer) DestroyReplica(ctx context.Context, req *enginev1.DestroyReplicaRequest) (*enginev1.DestroyReplicaResponse, error) {
	e := s.e
	e.opMu.Lock()
	defer e.opMu.Unlock()
	pe, r, err := e.findReplica(req.GetPool(), req.GetName())
	if err != nil {
		return nil, err
	}
	info := r.Info()
	e.mu.RLock()
	n := e.refsLocked(replicaRefKey(info.UUID))
	e.mu.RUnlock()
	if n > 0 {
		return nil, fmt.Errorf("replica %q is %w (%d open handle(s), e.g. a nexus child)", info.Name, ErrInUse, n)
	}
	if err := e.unshareLocked(ctx, "replica", info.UUID); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err := pe.p.DestroyReplica(ctx, info.UUID); err != nil {
		return nil, fmt.Errorf("destroy replica %q in pool %q: %w", info.Name, pe.name, err)
	}
	if err := e.save(); err != nil {
		return nil, err
	}
	e.log.Info("replica destroyed", "pool", pe.name, "replica", info.Name)
	return &enginev1.DestroyReplicaResponse{}, nil
}

func (s *apiServer) ListReplicas(_ context.Context, req *enginev1.ListReplicasRequest) (*enginev1.ListReplicasResponse, error) {
	e := s.e
	var pools []*poolEntry
	if req.GetPool() != "" {
		pe, err := e.poolByName(req.GetPool())
		if err != nil {
			return nil, err
		}
		pools = []*poolEntry{pe}
	} else {
		e.mu.RLock()
		for _, pe := range e.mu.pools {
			if pe.p != nil {
				pools = append(pools, pe)
			}
		}
		e.mu.RUnlock()
	}
	resp := &enginev1.ListReplicasResponse{}
	for _, pe := range pools {
		for _, r := range pe.p.Replicas() {
			ri := e.replicaInfo(pe.name, r)
			if req.GetName() != "" && req.GetName() != ri.Name && req.GetName() != ri.Uuid {
				continue
			}
			resp.Replicas = append(resp.Replicas, ri)
		}
	}
	slices.SortFunc(resp.Replicas, func(a, b *enginev1.Replica) int {
		if c := cmpStr(a.Pool, b.Pool); c != 0 {
			return c
		}
		return cmpStr(a.Name, b.Name)
	})
	if req.GetName() != "" && len(resp.Replicas) == 0 {
		return nil, fmt.Errorf("replica %q %w", req.GetName(), ErrNotFound)
	}
	return resp, nil
}

func (s *apiServer) ResizeReplica(ctx context.Context, req *enginev1.ResizeReplicaRequest) (*enginev1.ResizeReplicaResponse, error) {
	e := s.e
	if req.GetSize() == 0 || req.GetSize() > 1<<62 {
		return nil, fmt.Errorf("%w: bad replica size %d", ErrInvalidArgument, req.GetSize())
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	pe, r, err := e.findReplica(req.GetPool(), req.GetName())
	if err != nil {
		return nil, err
	}
	info := r.Info()
	if err := pe.p.ResizeReplica(ctx, info.UUID, int64(req.GetSize())); err != nil {
		return nil, fmt.Errorf("resize replica %q: %w", info.Name, err)
	}
	e.log.Info("replica resized", "pool", pe.name, "replica", info.Name, "size", req.GetSize())
	return &enginev1.ResizeReplicaResponse{Replica: e.replicaInfo(pe.name, r)}, nil
}

func (s *apiServer) ShareReplica(ctx context.Context, req *enginev1.ShareReplicaRequest) (*enginev1.ShareReplicaResponse, error) {
	e := s.e
	if err := checkShareOptions(req.GetOptions()); err != nil {
		return nil, err
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	pe, r, err := e.findReplica(req.GetPool(), req.GetName())
	if err != nil {
		return nil, err
	}
	rec := shareRecordFor("replica", pe.name, r.Info().UUID, req.GetOptions())
	if _, err := e.shareLocked(ctx, rec); err != nil {
		return nil, err
	}
	if err := e.save(); err != nil {
		return nil, err
	}
	return &enginev1.ShareReplicaResponse{Replica: e.replicaInfo(pe.name, r)}, nil
}

func (s *apiServer) UnshareReplica(ctx context.Context, req *enginev1.UnshareReplicaRequest) (*enginev1.UnshareReplicaResponse, error) {
	e := s.e
	e.opMu.Lock()
	defer e.opMu.Unlock()
	pe, r, err := e.findReplica(req.GetPool(), req.GetName())
	if err != nil {
		return nil, err
	}
	// Unsharing an unshared replica is a no-op (idempotent).
	if err := e.unshareLocked(ctx, "replica", r.Info().UUID); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err := e.save(); err != nil {
		return nil, err
	}
	return &enginev1.UnshareReplicaResponse{Replica: e.replicaInfo(pe.name, r)}, nil
}

func (e *Engine) replicaInfo(poolName string, r *pool.Replica) *enginev1.Replica {
	info := r.Info()
	out := &enginev1.Replica{
		Pool:      poolName,
		Name:      info.Name,
		Uuid:      info.UUID,
		Size:      uint64(info.Size),
		Thin:      info.Thin,
		Allocated: uint64(info.AllocatedBytes),
		Uri:       "bdev:///" + info.Name + "?uuid=" + info.UUID,
	}
	out.Share = e.shareInfo("replica", info.UUID)
	return out
}
