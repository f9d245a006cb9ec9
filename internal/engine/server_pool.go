package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/pool"
)

// poolEntry is an imported (or, after a failed re-import, faulted) pool.
type poolEntry struct {
	name string
	uuid string
	disk string // as the user gave it
	key  string // deviceKey(disk)
	dev  blockdev.Device
	p    *pool.Pool // nil when faulted
	err  error      // why the pool is faulted
	lock *diskLock  // held while imported (nil for disks without a file)
}

func (pe *poolEntry) close(log *slog.Logger) {
	if pe.p != nil {
		if err := pe.p.Close(); err != nil {
			log.Warn("close pool", "pool", pe.name, "err", err)
		}
	}
	if pe.dev != nil {
		if err := pe.dev.Close(); err != nil && !errors.Is(err, blockdev.ErrClosed) {
			log.Warn("close pool disk", "pool", pe.name, "err", err)
		}
	}
	pe.lock.unlock()
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$`)

// checkName validates an object name.
func checkName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s name is empty", ErrInvalidArgument, kind)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %s name %q: use letters, digits, '.', '_', ':' and '-' (at most 255, not starting with a symbol)", ErrInvalidArgument, kind, name)
	}
	return nil
}

func oneDisk(disks []string) (string, error) {
	switch len(disks) {
	case 0:
		return "", fmt.Errorf("%w: no disk given", ErrInvalidArgument)
	case 1:
		if disks[0] == "" {
			return "", fmt.Errorf("%w: empty disk", ErrInvalidArgument)
		}
		return disks[0], nil
	}
	return "", fmt.Errorf("%w: a pool has exactly one disk for now, got %d", ErrInvalidArgument, len(disks))
}

func (s *apiServer) CreatePool(ctx context.Context, req *enginev1.CreatePoolRequest) (*enginev1.CreatePoolResponse, error) {
	disk, err := oneDisk(req.GetDisks())
	if err != nil {
		return nil, err
	}
	p, err := s.e.CreatePool(ctx, req.GetName(), disk, int64(req.GetClusterSize()), req.GetUuid())
	if err != nil {
		return nil, err
	}
	return &enginev1.CreatePoolResponse{Pool: p}, nil
}

// CreatePool creates a pool on disk. Repeating it with the same arguments
// returns the existing pool.
func (e *Engine) CreatePool(ctx context.Context, name, disk string, clusterSize int64, uuid string) (*enginev1.Pool, error) {
	if err := checkName("pool", name); err != nil {
		return nil, err
	}
	if clusterSize < 0 {
		return nil, fmt.Errorf("%w: negative cluster size", ErrInvalidArgument)
	}
	key, err := deviceKey(disk)
	if err != nil {
		return nil, err
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()

	e.mu.Lock()
	if pe, ok := e.mu.pools[name]; ok {
		e.mu.Unlock()
		if pe.key == key && pe.p != nil && (uuid == "" || uuid == pe.uuid) {
			return e.poolInfo(pe), nil
		}
		return nil, fmt.Errorf("pool %q %w (on %s)", name, ErrExists, pe.disk)
	}
	if err := e.claimLocked(key, fmt.Sprintf("pool %q", name), disk); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	e.mu.Unlock()
	unclaim := func() {
		e.mu.Lock()
		delete(e.mu.claims, key)
		e.mu.Unlock()
	}

	lk, err := lockDisk(disk)
	if err != nil {
		unclaim()
		return nil, err
	}
	dev, err := e.reg.Open(ctx, disk)
	if err != nil {
		lk.unlock()
		unclaim()
		return nil, fmt.Errorf("open disk %q: %w", disk, err)
	}
	p, err := pool.Create(ctx, dev, name, pool.CreateOptions{ClusterSize: clusterSize, UUID: uuid})
	if err != nil {
		dev.Close()
		lk.unlock()
		unclaim()
		return nil, fmt.Errorf("create pool %q on %q: %w", name, disk, err)
	}
	pe := &poolEntry{name: name, uuid: p.UUID(), disk: disk, key: key, dev: dev, p: p, lock: lk}
	e.mu.Lock()
	e.mu.pools[name] = pe
	e.mu.Unlock()
	if err := e.save(); err != nil {
		// Without a state record the engine would forget the pool on
		// restart; undo so that the caller can retry.
		e.mu.Lock()
		delete(e.mu.pools, name)
		delete(e.mu.claims, key)
		e.mu.Unlock()
		if derr := p.Destroy(ctx); derr != nil {
			e.log.Error("undo pool create", "pool", name, "err", derr)
		}
		pe.close(e.log)
		return nil, err
	}
	e.log.Info("pool created", "pool", name, "disk", disk, "uuid", pe.uuid)
	return e.poolInfo(pe), nil
}

func (s *apiServer) ImportPool(ctx context.Context, req *enginev1.ImportPoolRequest) (*enginev1.ImportPoolResponse, error) {
	disk, err := oneDisk(req.GetDisks())
	if err != nil {
		return nil, err
	}
	s.e.opMu.Lock()
	defer s.e.opMu.Unlock()
	name, err := s.e.importPoolOrExisting(ctx, disk, req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.e.save(); err != nil {
		return nil, err
	}
	s.e.mu.RLock()
	pe := s.e.mu.pools[name]
	s.e.mu.RUnlock()
	return &enginev1.ImportPoolResponse{Pool: s.e.poolInfo(pe)}, nil
}

// importPoolOrExisting imports the pool on disk, or returns the name of
// the pool already imported from it. Callers hold opMu.
func (e *Engine) importPoolOrExisting(ctx context.Context, disk, wantName string) (string, error) {
	key, err := deviceKey(disk)
	if err != nil {
		return "", err
	}
	e.mu.RLock()
	for _, pe := range e.mu.pools {
		if pe.key == key && pe.p != nil {
			e.mu.RUnlock()
			if wantName != "" && wantName != pe.name {
				return "", fmt.Errorf("disk %q holds pool %q, not %q: %w", disk, pe.name, wantName, ErrInvalidArgument)
			}
			return pe.name, nil
		}
	}
	e.mu.RUnlock()
	if err := e.importPoolLocked(ctx, disk, wantName); err != nil {
		return "", err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, pe := range e.mu.pools {
		if pe.key == key && pe.p != nil {
			return pe.name, nil
		}
	}
	return "", fmt.Errorf("pool on %q vanished during import: %w", disk, ErrNotFound)
}

// importPoolLocked opens disk and imports the pool on it. A faulted entry
// of the same name is replaced. Callers hold opMu and save the state.
func (e *Engine) importPoolLocked(ctx context.Context, disk, wantName string) error {
	key, err := deviceKey(disk)
	if err != nil {
		return err
	}
	e.mu.Lock()
	if err := e.claimLocked(key, "a pool being imported", disk); err != nil {
		e.mu.Unlock()
		return err
	}
	e.mu.Unlock()
	unclaim := func() {
		e.mu.Lock()
		delete(e.mu.claims, key)
		e.mu.Unlock()
	}
	lk, err := lockDisk(disk)
	if err != nil {
		unclaim()
		return err
	}
	dev, err := e.reg.Open(ctx, disk)
	if err != nil {
		lk.unlock()
		unclaim()
		return fmt.Errorf("open disk %q: %w", disk, err)
	}
	p, err := pool.Import(ctx, dev)
	if err != nil {
		dev.Close()
		lk.unlock()
		unclaim()
		return fmt.Errorf("import pool from %q: %w", disk, err)
	}
	name := p.Name()
	fail := func(err error) error {
		_ = p.Close()
		dev.Close()
		lk.unlock()
		unclaim()
		return err
	}
	if wantName != "" && name != wantName {
		return fail(fmt.Errorf("disk %q holds pool %q, not %q: %w", disk, name, wantName, ErrInvalidArgument))
	}
	e.mu.Lock()
	if old, ok := e.mu.pools[name]; ok && old.p != nil {
		e.mu.Unlock()
		return fail(fmt.Errorf("pool %q %w (on %s)", name, ErrExists, old.disk))
	}
	e.mu.claims[key] = fmt.Sprintf("pool %q", name)
	e.mu.pools[name] = &poolEntry{name: name, uuid: p.UUID(), disk: disk, key: key, dev: dev, p: p, lock: lk}
	e.mu.Unlock()
	return nil
}

func (s *apiServer) DestroyPool(ctx context.Context, req *enginev1.DestroyPoolRequest) (*enginev1.DestroyPoolResponse, error) {
	if err := s.e.removePool(ctx, req.GetName(), true); err != nil {
		return nil, err
	}
	return &enginev1.DestroyPoolResponse{}, nil
}

func (s *apiServer) ExportPool(ctx context.Context, req *enginev1.ExportPoolRequest) (*enginev1.ExportPoolResponse, error) {
	if err := s.e.removePool(ctx, req.GetName(), false); err != nil {
		return nil, err
	}
	return &enginev1.ExportPoolResponse{}, nil
}

// removePool destroys (wipes) or exports a pool and forgets it. Shares of
// its replicas are removed first; replicas open elsewhere in the engine
// (e.g. as nexus children) make it fail with ErrInUse.
func (e *Engine) removePool(ctx context.Context, name string, destroy bool) error {
	if name == "" {
		return fmt.Errorf("%w: pool name is empty", ErrInvalidArgument)
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	e.mu.RLock()
	pe, ok := e.mu.pools[name]
	e.mu.RUnlock()
	if !ok {
		return fmt.Errorf("pool %q %w", name, ErrNotFound)
	}
	if pe.p != nil {
		e.mu.RLock()
		for _, r := range pe.p.Replicas() {
			if n := e.refsLocked(replicaRefKey(r.Info().UUID)); n > 0 {
				e.mu.RUnlock()
				return fmt.Errorf("pool %q: replica %q is %w (%d open handle(s), e.g. a nexus child)", name, r.Info().Name, ErrInUse, n)
			}
		}
		e.mu.RUnlock()
		for _, r := range pe.p.Replicas() {
			if err := e.unshareLocked(ctx, "replica", r.Info().UUID); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		var err error
		if destroy {
			err = pe.p.Destroy(ctx)
		} else {
			err = pe.p.Export(ctx)
		}
		if err != nil {
			return fmt.Errorf("pool %q: %w", name, err)
		}
		if pe.dev != nil {
			if err := pe.dev.Close(); err != nil && !errors.Is(err, blockdev.ErrClosed) {
				e.log.Warn("close pool disk", "pool", name, "err", err)
			}
		}
		pe.lock.unlock()
	} else if destroy {
		return fmt.Errorf("pool %q is faulted (%v); fix the disk and restart, or export it to forget it: %w", name, pe.err, ErrInUse)
	}
	// Shares recorded for replicas of this pool (also when faulted).
	e.mu.Lock()
	delete(e.mu.pools, name)
	if pe.key != "" {
		delete(e.mu.claims, pe.key)
	}
	for k, s := range e.mu.shares {
		if s.rec.Kind == "replica" && s.rec.Pool == name {
			delete(e.mu.shares, k)
		}
	}
	e.mu.Unlock()
	verb := "exported"
	if destroy {
		verb = "destroyed"
	}
	e.log.Info("pool "+verb, "pool", name)
	return e.save()
}

func (s *apiServer) ListPools(_ context.Context, req *enginev1.ListPoolsRequest) (*enginev1.ListPoolsResponse, error) {
	s.e.mu.RLock()
	entries := make([]*poolEntry, 0, len(s.e.mu.pools))
	for _, pe := range s.e.mu.pools {
		if req.GetName() == "" || req.GetName() == pe.name {
			entries = append(entries, pe)
		}
	}
	s.e.mu.RUnlock()
	if req.GetName() != "" && len(entries) == 0 {
		return nil, fmt.Errorf("pool %q %w", req.GetName(), ErrNotFound)
	}
	slices.SortFunc(entries, func(a, b *poolEntry) int { return cmpStr(a.name, b.name) })
	resp := &enginev1.ListPoolsResponse{}
	for _, pe := range entries {
		resp.Pools = append(resp.Pools, s.e.poolInfo(pe))
	}
	return resp, nil
}

func (e *Engine) poolInfo(pe *poolEntry) *enginev1.Pool {
	out := &enginev1.Pool{Name: pe.name, Uuid: pe.uuid, Disks: []string{pe.disk}, State: enginev1.PoolState_POOL_STATE_FAULTED}
	if pe.p == nil {
		return out
	}
	st := pe.p.Stats()
	out.State = enginev1.PoolState_POOL_STATE_ONLINE
	out.Capacity = uint64(st.Capacity)
	out.Used = uint64(st.Used)
	out.Free = uint64(st.Free)
	out.ClusterSize = uint64(st.ClusterSize)
	out.ReplicaCount = uint32(len(pe.p.Replicas()))
	return out
}

// poolByName returns a live pool. Callers need not hold any lock.
func (e *Engine) poolByName(name string) (*poolEntry, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: pool name is empty", ErrInvalidArgument)
	}
	e.mu.RLock()
	pe, ok := e.mu.pools[name]
	e.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("pool %q %w", name, ErrNotFound)
	}
	if pe.p == nil {
		return nil, fmt.Errorf("pool %q is faulted: %v: %w", name, pe.err, ErrUnavailable)
	}
	return pe, nil
}

// EnsurePool makes sure pool name is loaded from disk: it returns at once
// when it is, imports the pool when the disk holds it, and creates it
// otherwise. `kura up` uses it for its default pool.
func (e *Engine) EnsurePool(ctx context.Context, name, disk string, clusterSize int64) (*enginev1.Pool, error) {
	e.mu.RLock()
	pe, ok := e.mu.pools[name]
	e.mu.RUnlock()
	if ok && pe.p != nil {
		return e.poolInfo(pe), nil
	}
	dev, err := e.reg.Open(ctx, disk)
	if err != nil {
		return nil, fmt.Errorf("open disk %q: %w", disk, err)
	}
	_, perr := pool.Probe(ctx, dev)
	dev.Close()
	if perr == nil {
		e.opMu.Lock()
		defer e.opMu.Unlock()
		if ok { // faulted entry: replace it
			e.mu.Lock()
			delete(e.mu.pools, name)
			e.mu.Unlock()
		}
		if _, err := e.importPoolOrExisting(ctx, disk, name); err != nil {
			return nil, err
		}
		if err := e.save(); err != nil {
			return nil, err
		}
		e.mu.RLock()
		pe := e.mu.pools[name]
		e.mu.RUnlock()
		return e.poolInfo(pe), nil
	}
	if !errors.Is(perr, pool.ErrNotAPool) {
		return nil, fmt.Errorf("probe %q: %w", disk, perr)
	}
	return e.CreatePool(ctx, name, disk, clusterSize, "")
}
