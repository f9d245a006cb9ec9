package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nexus"
	"github.com/kura-io/kura/internal/nvmetcp"
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

// remoteSnapshotter is the snapshot side of an nvmf:// child device
// (*nvmetcp.Device): the vendor admin commands the target of a Kura
// replica share answers (replicaSnapshots).
type remoteSnapshotter interface {
	CreateSnapshot(ctx context.Context, name, uuid string) error
	SnapshotInfo(ctx context.Context, uuid string) (nvmetcp.SnapshotInfo, error)
	DestroySnapshot(ctx context.Context, uuid string) error
}

var _ remoteSnapshotter = (*nvmetcp.Device)(nil)

// childSnap is the plan for one healthy child of a nexus snapshot.
type childSnap struct {
	uri  string
	name string // snapshot name: NEXUS-SNAPSHOT-REPLICA
	// local child (bdev:///REPLICA)
	pe      *poolEntry
	replica string
	existed bool // an earlier identical request already took it (local and remote)
	// remote child (nvmf://...)
	remote remoteSnapshotter
	uuid   string
	source string // export (replica) name on the remote engine
}

// CreateNexusSnapshot pauses the nexus (so every child holds the same
// data), snapshots each healthy child as NAME-REPLICA, and resumes.
// Children that are replicas of this engine (bdev:///) are snapshotted in
// their pool; children that are replicas shared over NVMe/TCP by another
// Kura engine (nvmf://) are snapshotted by their target through the
// existing connection (vendor admin command, docs/nvmetcp.md). Faulted,
// offline and rebuilding children are skipped: their data is not current.
//
// Everything that can be checked up front is (names, local collisions,
// whether each child can be snapshotted) before any snapshot is taken.
// Remote snapshots are taken first, then local ones. On a failure every
// snapshot this request created is destroyed again: local ones in their
// pool, remote ones with the Destroy Snapshot vendor command. Snapshots
// that an earlier identical request took (the remote UUID is derived from
// nexus, name and child; the local name from name and replica) stay. A
// rollback that fails is logged and named in the error, which still
// wraps the original failure.
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
	// Pause waits for in-flight I/O; every acknowledged write is then on
	// every healthy child, and each snapshot is crash-consistent. The
	// child set is read while paused (admin changes need opMu, held here).
	if err := ne.n.Pause(ctx); err != nil {
		return nil, fmt.Errorf("nexus %q: pause: %w", ne.rec.Name, err)
	}
	resume := sync.OnceFunc(ne.n.Resume)
	defer resume()
	plan, err := e.planNexusSnapshot(ne, req.GetName())
	if err != nil {
		return nil, err
	}
	var taken []*childSnap // created by this request, in order
	fail := func(err error) error {
		if left := e.rollbackNexusSnapshot(ctx, ne, taken); len(left) > 0 {
			err = fmt.Errorf("%w (rollback failed, left behind: %s)", err, strings.Join(left, ", "))
		}
		return err
	}
	for _, c := range plan {
		if c.remote == nil {
			continue
		}
		// Did an earlier identical request take it? Then a rollback must
		// keep it. (The UUID is derived, so it is this nexus' snapshot.)
		_, err := c.remote.SnapshotInfo(ctx, c.uuid)
		switch {
		case err == nil:
			c.existed = true
		case !errors.Is(err, nvmetcp.ErrSnapshotNotFound):
			return nil, fail(fmt.Errorf("nexus %q: child %s: %w", ne.rec.Name, c.uri, err))
		}
		if err := c.remote.CreateSnapshot(ctx, c.name, c.uuid); err != nil {
			return nil, fail(fmt.Errorf("nexus %q: child %s: %w", ne.rec.Name, c.uri, err))
		}
		if !c.existed {
			taken = append(taken, c)
		}
	}
	for _, c := range plan {
		if c.remote != nil {
			continue
		}
		if _, err := c.pe.p.CreateSnapshot(ctx, c.replica, c.name, ""); err != nil {
			return nil, fail(fmt.Errorf("nexus %q: snapshot %q of replica %q: %w", ne.rec.Name, c.name, c.replica, err))
		}
		if !c.existed {
			taken = append(taken, c)
		}
	}
	resume()
	e.log.Info("nexus snapshot created", "nexus", ne.rec.Name, "snapshot", req.GetName(), "children", len(plan))
	resp := &enginev1.CreateNexusSnapshotResponse{}
	for _, c := range plan {
		resp.Snapshots = append(resp.Snapshots, e.childSnapInfo(ctx, ne, c))
	}
	return resp, nil
}

// rollbackNexusSnapshot destroys the snapshots a failed nexus snapshot
// created (newest first), even if ctx is cancelled, and returns the ones
// it could not destroy. A remote snapshot already gone (Not Found) counts
// as destroyed.
func (e *Engine) rollbackNexusSnapshot(ctx context.Context, ne *nexusEntry, taken []*childSnap) (left []string) {
	rctx := context.WithoutCancel(ctx)
	for _, c := range slices.Backward(taken) {
		var err error
		if c.remote != nil {
			if err = c.remote.DestroySnapshot(rctx, c.uuid); errors.Is(err, nvmetcp.ErrSnapshotNotFound) {
				err = nil
			}
		} else {
			err = c.pe.p.DestroySnapshot(rctx, c.name, false)
		}
		if err != nil {
			e.log.Warn("nexus snapshot: roll back snapshot", "nexus", ne.rec.Name, "child", c.uri, "snapshot", c.name, "err", err)
			left = append(left, c.name+" on "+c.uri)
			continue
		}
		e.log.Info("nexus snapshot: rolled back snapshot", "nexus", ne.rec.Name, "child", c.uri, "snapshot", c.name)
	}
	return left
}

// planNexusSnapshot checks every healthy child of a paused nexus and
// returns what to snapshot.
func (e *Engine) planNexusSnapshot(ne *nexusEntry, name string) ([]*childSnap, error) {
	var plan []*childSnap
	for _, c := range ne.n.Status().Children {
		if c.State != nexus.ChildOpen {
			e.log.Info("nexus snapshot skips a child that is not healthy", "nexus", ne.rec.Name, "child", c.URI, "state", c.State.String())
			continue
		}
		u, err := blockdev.ParseURI(c.URI)
		if err != nil {
			return nil, fmt.Errorf("nexus %q: child %q: %w", ne.rec.Name, c.URI, err)
		}
		cs := &childSnap{uri: c.URI}
		if u.Scheme == "bdev" || u.Scheme == "loopback" {
			pe, r, err := e.findReplica("", strings.Trim(u.Host+u.Path, "/"))
			if err != nil {
				return nil, fmt.Errorf("nexus %q: child %q: %w", ne.rec.Name, c.URI, err)
			}
			cs.pe, cs.replica = pe, r.Info().Name
			cs.name = name + "-" + cs.replica
			if err := checkName("snapshot", cs.name); err != nil {
				return nil, fmt.Errorf("nexus %q: child %q: %w", ne.rec.Name, c.URI, err)
			}
			if si, err := e.findSnapshotInfo(pe, cs.name); err == nil {
				if si.Source != cs.replica || si.Name != cs.name {
					return nil, fmt.Errorf("nexus %q: snapshot %q %w in pool %q (source %q)", ne.rec.Name, cs.name, ErrExists, pe.name, si.Source)
				}
				cs.existed = true
			}
			plan = append(plan, cs)
			continue
		}
		dev, err := ne.n.ChildDevice(c.URI)
		if err != nil {
			return nil, fmt.Errorf("nexus %q: child %q: %w", ne.rec.Name, c.URI, err)
		}
		rs, ok := dev.(remoteSnapshotter)
		if !ok {
			return nil, fmt.Errorf("nexus %q: child %q (only replicas of this engine, bdev:///NAME, and replicas shared over NVMe/TCP by a Kura engine, nvmf://, can be): %w",
				ne.rec.Name, c.URI, ErrNotSnapshottable)
		}
		cfg, err := nvmetcp.ParseURI(c.URI)
		if err != nil {
			return nil, fmt.Errorf("nexus %q: child %q: %w", ne.rec.Name, c.URI, err)
		}
		cs.remote = rs
		cs.source = strings.TrimPrefix(cfg.SubNQN, nvmetcp.KuraNQNPrefix)
		cs.name = name + "-" + cs.source
		if err := checkName("snapshot", cs.name); err != nil {
			return nil, fmt.Errorf("nexus %q: child %q: %w", ne.rec.Name, c.URI, err)
		}
		// Derived, so that repeating the request is idempotent on the
		// remote pool while another nexus' snapshot of the same name is a
		// collision.
		cs.uuid = uuid.NewSHA1(nexusSnapNS, []byte(ne.rec.UUID+"\x00"+cs.name+"\x00"+cfg.SubNQN)).String()
		plan = append(plan, cs)
	}
	if len(plan) == 0 {
		return nil, fmt.Errorf("nexus %q: %w", ne.rec.Name, nexus.ErrNoHealthy)
	}
	return plan, nil
}

// nexusSnapNS is the UUID namespace of remote nexus-snapshot UUIDs.
var nexusSnapNS = uuid.MustParse("6b757261-6e78-5305-8e9b-7a0c1d2e3f40")

// childSnapInfo describes the snapshot taken of one child for the response.
func (e *Engine) childSnapInfo(ctx context.Context, ne *nexusEntry, c *childSnap) *enginev1.Snapshot {
	if c.remote == nil {
		if si, err := e.findSnapshotInfo(c.pe, c.name); err == nil {
			return snapshotInfo(c.pe.name, si)
		}
		return &enginev1.Snapshot{Pool: c.pe.name, Name: c.name, Source: c.replica}
	}
	si, err := c.remote.SnapshotInfo(ctx, c.uuid)
	if err != nil {
		e.log.Warn("nexus snapshot: describe remote snapshot", "nexus", ne.rec.Name, "child", c.uri, "err", err)
		return &enginev1.Snapshot{Name: c.name, Uuid: c.uuid, Source: c.source, Size: uint64(ne.n.Size())}
	}
	return &enginev1.Snapshot{
		Pool: si.Pool, Name: si.Name, Uuid: si.UUID, Source: si.Source, Size: si.Size,
		Allocated: si.Exclusive, Referenced: si.Referenced, CreateTimeUnixNano: si.Created.UnixNano(),
	}
}

// replicaSnapshots is the snapshot hook of a replica shared over NVMe/TCP:
// a connected host that may write the replica (a nexus on another engine)
// snapshots it in its pool. It does not take opMu: the hook runs while the
// host's engine may hold its own opMu waiting for this answer (two engines
// snapshotting nexuses over each other's replicas, or a nexus over its own
// engine's share), and the pool serializes its metadata changes itself.
type replicaSnapshots struct {
	e       *Engine
	pool    string
	replica string
}

func (h *replicaSnapshots) CreateSnapshot(ctx context.Context, name, id string) error {
	if err := checkName("snapshot", name); err != nil {
		return fmt.Errorf("%w: %w", nvmetcp.ErrSnapshotInvalid, err)
	}
	pe, r, err := h.e.findReplica(h.pool, h.replica)
	if err != nil {
		return err
	}
	replica := r.Info().Name
	if _, err := pe.p.CreateSnapshot(ctx, replica, name, id); err != nil {
		switch {
		case errors.Is(err, pool.ErrExists):
			err = fmt.Errorf("%w: %w", nvmetcp.ErrSnapshotExists, err)
		case errors.Is(err, pool.ErrInvalidArgument):
			err = fmt.Errorf("%w: %w", nvmetcp.ErrSnapshotInvalid, err)
		}
		return err
	}
	h.e.log.Info("snapshot created for a remote host", "pool", pe.name, "replica", replica, "snapshot", name, "uuid", id)
	return nil
}

// SnapshotInfo describes a snapshot of this replica (only: a host of one
// replica learns nothing about other snapshots in the pool).
func (h *replicaSnapshots) SnapshotInfo(_ context.Context, id string) (nvmetcp.SnapshotInfo, error) {
	pe, r, err := h.e.findReplica(h.pool, h.replica)
	if err != nil {
		return nvmetcp.SnapshotInfo{}, err
	}
	for _, si := range pe.p.Snapshots() {
		if si.UUID == id && si.Source == r.Info().Name {
			return nvmetcp.SnapshotInfo{Pool: pe.name, Name: si.Name, UUID: si.UUID, Source: si.Source, Size: uint64(si.Size),
				Referenced: uint64(si.ReferencedBytes), Exclusive: uint64(si.ExclusiveBytes), Created: si.Created}, nil
		}
	}
	return nvmetcp.SnapshotInfo{}, fmt.Errorf("%w: %s of replica %s", nvmetcp.ErrSnapshotNotFound, id, r.Info().Name)
}

// DestroySnapshot destroys a snapshot of this replica (only: another
// replica's snapshot in the pool, a replica, or an unknown UUID is
// ErrSnapshotNotFound, as for SnapshotInfo). It never forces: a snapshot
// that clones depend on is ErrSnapshotHasDependents. Destroying it merges
// its clusters into the replica (pool.DestroySnapshot).
func (h *replicaSnapshots) DestroySnapshot(ctx context.Context, id string) error {
	pe, r, err := h.e.findReplica(h.pool, h.replica)
	if err != nil {
		return err
	}
	ri := r.Info()
	var snap *pool.SnapshotInfo
	for _, si := range pe.p.Snapshots() {
		if si.UUID == id && si.Source == ri.Name && si.SourceUUID == ri.UUID {
			snap = &si
			break
		}
	}
	if snap == nil {
		return fmt.Errorf("%w: %s of replica %s", nvmetcp.ErrSnapshotNotFound, id, ri.Name)
	}
	if len(snap.Clones) > 0 {
		return fmt.Errorf("%w: snapshot %s has clones %s", nvmetcp.ErrSnapshotHasDependents, snap.Name, strings.Join(snap.Clones, ", "))
	}
	// By name: names are unique in the pool and the name was just matched
	// to this UUID and source.
	if err := pe.p.DestroySnapshot(ctx, snap.Name, false); err != nil {
		switch {
		case errors.Is(err, pool.ErrNotFound): // destroyed meanwhile
			err = fmt.Errorf("%w: %w", nvmetcp.ErrSnapshotNotFound, err)
		case errors.Is(err, pool.ErrHasDependents): // cloned meanwhile
			err = fmt.Errorf("%w: %w", nvmetcp.ErrSnapshotHasDependents, err)
		}
		return err
	}
	h.e.log.Info("snapshot destroyed for a remote host", "pool", pe.name, "replica", ri.Name, "snapshot", snap.Name, "uuid", id)
	return nil
}
