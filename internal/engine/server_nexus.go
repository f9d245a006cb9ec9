package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/uuid"
	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nexus"
	"github.com/kura-io/kura/internal/rebuild"
)

// nexusEntry is a nexus of this engine.
type nexusEntry struct {
	rec nexusRecord
	n   *nexus.Nexus
}

// nexusServer implements NexusService.
type nexusServer struct {
	enginev1.UnimplementedNexusServiceServer
	e *Engine
}

// nexusStore returns the NexusInfo store and dirty-log directory.
func (e *Engine) nexusStore() (nexus.InfoStore, string, error) {
	st, err := nexus.NewFileStore(filepath.Join(e.cfg.DataDir, "nexus-info"))
	if err != nil {
		return nil, "", err
	}
	logDir := filepath.Join(e.cfg.DataDir, "nexus-logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, "", fmt.Errorf("nexus log directory: %w", err)
	}
	return st, logDir, nil
}

// createNexusLocked builds a nexus over its children. Callers hold opMu
// and save.
func (e *Engine) createNexusLocked(ctx context.Context, rec nexusRecord) (*nexusEntry, error) {
	if err := checkName("nexus", rec.Name); err != nil {
		return nil, err
	}
	if len(rec.Children) == 0 {
		return nil, fmt.Errorf("%w: a nexus needs at least one child", ErrInvalidArgument)
	}
	for _, c := range rec.Children {
		u, err := blockdev.ParseURI(c)
		if err != nil {
			return nil, err
		}
		if err := e.checkChildFree(c); err != nil {
			return nil, fmt.Errorf("nexus %q: %w", rec.Name, err)
		}
		if u.Scheme == "bdev" || u.Scheme == "loopback" {
			// Name a missing local child precisely (the nexus would only
			// report that no child could be opened).
			if _, _, _, err := e.lookupLocal(strings.Trim(u.Host+u.Path, "/")); err != nil {
				return nil, fmt.Errorf("nexus %q: child %q: %w", rec.Name, c, err)
			}
		}
	}
	if rec.Size < 0 {
		return nil, fmt.Errorf("%w: negative size", ErrInvalidArgument)
	}
	e.mu.RLock()
	old, ok := e.mu.nexuses[rec.Name]
	e.mu.RUnlock()
	if ok {
		sameUUID := rec.UUID == "" || rec.UUID == old.rec.UUID
		sameSize := rec.Size == 0 || rec.Size == old.rec.Size
		sameChildren := slices.Equal(rec.Children, old.rec.Children)
		if sameUUID && sameSize && sameChildren {
			return old, nil
		}
		return nil, fmt.Errorf("nexus %q %w with other arguments (children %v)", rec.Name, ErrExists, old.rec.Children)
	}
	store, logDir, err := e.nexusStore()
	if err != nil {
		return nil, err
	}
	if rec.UUID == "" {
		rec.UUID = uuid.NewString()
	}
	n, err := nexus.New(ctx, nexus.Config{
		Name: rec.Name, UUID: rec.UUID, Size: rec.Size, Children: slices.Clone(rec.Children),
		Opener: e.reg.Open, Store: store, LogDir: logDir, WriteIntent: rec.WriteIntent, Logger: e.cfg.Logger,
		ChildTimeout: e.cfg.ChildTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("create nexus %q: %w", rec.Name, err)
	}
	rec.Size = n.Size()
	ne := &nexusEntry{rec: rec, n: n}
	e.mu.Lock()
	e.mu.nexuses[rec.Name] = ne
	delete(e.mu.lostNexuses, rec.Name)
	e.mu.Unlock()
	e.log.Info("nexus created", "nexus", rec.Name, "size", rec.Size, "children", rec.Children)
	return ne, nil
}

// recordedHealthy returns the children the NexusInfo of a nexus records as
// healthy (nil when there is no record).
func (e *Engine) recordedHealthy(ctx context.Context, rec nexusRecord) map[string]bool {
	store, _, err := e.nexusStore()
	if err != nil {
		return nil
	}
	id := rec.UUID
	if id == "" {
		id = rec.Name
	}
	info, err := store.Load(ctx, id)
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, c := range info.Children {
		if c.Healthy {
			out[c.URI] = true
		}
	}
	return out
}

// resyncAfterRestart brings back the children of a re-created nexus that
// were healthy before the engine stopped but are not trusted now (after an
// unclean shutdown only one healthy child is served): each is onlined, so
// it is resynced from the served child (partially, with the write-intent
// log). Children faulted or offlined before the restart stay so until
// `kura nexus online`.
func (e *Engine) resyncAfterRestart(ctx context.Context, ne *nexusEntry, healthyBefore map[string]bool) {
	for _, c := range ne.n.Status().Children {
		if c.State != nexus.ChildFaulted || !healthyBefore[c.URI] {
			continue
		}
		if err := ne.n.OnlineChild(ctx, c.URI); err != nil {
			e.log.Warn("resync child after restart", "nexus", ne.rec.Name, "child", c.URI, "err", err)
			continue
		}
		e.log.Info("resyncing child after restart", "nexus", ne.rec.Name, "child", c.URI)
	}
}

// checkChildFree refuses a child that is a disk used by a pool or bdev of
// this engine (use bdev:///NAME to mirror onto a bdev).
func (e *Engine) checkChildFree(uri string) error {
	key, err := deviceKey(uri)
	if err != nil {
		return err
	}
	e.mu.RLock()
	owner, used := e.mu.claims[key]
	e.mu.RUnlock()
	if used {
		return fmt.Errorf("child %q is %w by %s", uri, ErrInUse, owner)
	}
	return nil
}

func (s *nexusServer) CreateNexus(ctx context.Context, req *enginev1.CreateNexusRequest) (*enginev1.CreateNexusResponse, error) {
	e := s.e
	if req.GetSize() > 1<<62 {
		return nil, fmt.Errorf("%w: size too large", ErrInvalidArgument)
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	ne, err := e.createNexusLocked(ctx, nexusRecord{Name: req.GetName(), UUID: req.GetUuid(), Size: int64(req.GetSize()),
		Children: req.GetChildren(), WriteIntent: req.GetWriteIntent()})
	if err != nil {
		return nil, err
	}
	if err := e.save(); err != nil {
		return nil, err
	}
	return &enginev1.CreateNexusResponse{Nexus: e.nexusInfo(ne)}, nil
}

func (e *Engine) nexusByName(name string) (*nexusEntry, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: nexus name is empty", ErrInvalidArgument)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	ne, ok := e.mu.nexuses[name]
	if !ok {
		return nil, fmt.Errorf("nexus %q %w", name, ErrNotFound)
	}
	return ne, nil
}

func (s *nexusServer) DestroyNexus(ctx context.Context, req *enginev1.DestroyNexusRequest) (*enginev1.DestroyNexusResponse, error) {
	e := s.e
	e.opMu.Lock()
	defer e.opMu.Unlock()
	ne, err := e.nexusByName(req.GetName())
	if err != nil {
		e.mu.Lock()
		_, lost := e.mu.lostNexuses[req.GetName()]
		delete(e.mu.lostNexuses, req.GetName())
		delete(e.mu.shares, shareKey("nexus", req.GetName()))
		e.mu.Unlock()
		if lost {
			return &enginev1.DestroyNexusResponse{}, e.save()
		}
		return nil, err
	}
	if err := e.unshareLocked(ctx, "nexus", ne.rec.Name); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err := ne.n.Destroy(ctx); err != nil {
		e.log.Warn("destroy nexus", "nexus", ne.rec.Name, "err", err)
	}
	e.mu.Lock()
	delete(e.mu.nexuses, ne.rec.Name)
	e.mu.Unlock()
	if err := e.save(); err != nil {
		return nil, err
	}
	e.log.Info("nexus destroyed", "nexus", ne.rec.Name)
	return &enginev1.DestroyNexusResponse{}, nil
}

func (s *nexusServer) ShutdownNexus(ctx context.Context, req *enginev1.ShutdownNexusRequest) (*enginev1.ShutdownNexusResponse, error) {
	e := s.e
	e.opMu.Lock()
	defer e.opMu.Unlock()
	ne, err := e.nexusByName(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := e.unshareLocked(ctx, "nexus", ne.rec.Name); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err := ne.n.Shutdown(ctx); err != nil {
		return nil, fmt.Errorf("shutdown nexus %q: %w", ne.rec.Name, err)
	}
	// A shut-down nexus stays listed until destroyed but is not re-created
	// after a restart.
	ne.rec.Shutdown = true
	if err := e.save(); err != nil {
		return nil, err
	}
	return &enginev1.ShutdownNexusResponse{Nexus: e.nexusInfo(ne)}, nil
}

func (s *nexusServer) ListNexuses(_ context.Context, req *enginev1.ListNexusesRequest) (*enginev1.ListNexusesResponse, error) {
	e := s.e
	e.mu.RLock()
	var list []*nexusEntry
	for _, ne := range e.mu.nexuses {
		if req.GetName() == "" || req.GetName() == ne.rec.Name {
			list = append(list, ne)
		}
	}
	resp := &enginev1.ListNexusesResponse{}
	for _, l := range e.mu.lostNexuses {
		if req.GetName() != "" && req.GetName() != l.rec.Name {
			continue
		}
		// Listed faulted with the reason on every child; destroy forgets it.
		n := &enginev1.Nexus{Name: l.rec.Name, Uuid: l.rec.UUID, Size: uint64(l.rec.Size), State: enginev1.NexusState_NEXUS_STATE_FAULTED}
		for _, c := range l.rec.Children {
			n.Children = append(n.Children, &enginev1.Child{Uri: c, State: enginev1.ChildState_CHILD_STATE_UNKNOWN, Reason: "not re-created at start: " + l.err.Error()})
		}
		resp.Nexuses = append(resp.Nexuses, n)
	}
	e.mu.RUnlock()
	for _, ne := range list {
		resp.Nexuses = append(resp.Nexuses, e.nexusInfo(ne))
	}
	if req.GetName() != "" && len(resp.Nexuses) == 0 {
		return nil, fmt.Errorf("nexus %q %w", req.GetName(), ErrNotFound)
	}
	slices.SortFunc(resp.Nexuses, func(a, b *enginev1.Nexus) int { return cmpStr(a.Name, b.Name) })
	return resp, nil
}

func (s *nexusServer) PublishNexus(ctx context.Context, req *enginev1.PublishNexusRequest) (*enginev1.PublishNexusResponse, error) {
	e := s.e
	if err := checkShareOptions(req.GetOptions()); err != nil {
		return nil, err
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	ne, err := e.nexusByName(req.GetName())
	if err != nil {
		return nil, err
	}
	if _, err := e.shareLocked(ctx, shareRecordFor("nexus", "", ne.rec.Name, req.GetOptions())); err != nil {
		return nil, err
	}
	if err := e.save(); err != nil {
		return nil, err
	}
	return &enginev1.PublishNexusResponse{Nexus: e.nexusInfo(ne)}, nil
}

// editNexus runs f on the named nexus under the engine's operation lock and
// persists the engine state when f succeeds.
func (e *Engine) editNexus(name string, f func(ne *nexusEntry) error) (*enginev1.Nexus, error) {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	ne, err := e.nexusByName(name)
	if err != nil {
		return nil, err
	}
	if err := f(ne); err != nil {
		return nil, err
	}
	if err := e.save(); err != nil {
		return nil, err
	}
	return e.nexusInfo(ne), nil
}

func (s *nexusServer) UnpublishNexus(ctx context.Context, req *enginev1.UnpublishNexusRequest) (*enginev1.UnpublishNexusResponse, error) {
	e := s.e
	n, err := e.editNexus(req.GetName(), func(ne *nexusEntry) error {
		if err := e.unshareLocked(ctx, "nexus", ne.rec.Name); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &enginev1.UnpublishNexusResponse{Nexus: n}, nil
}

func (s *nexusServer) AddChild(ctx context.Context, req *enginev1.AddChildRequest) (*enginev1.AddChildResponse, error) {
	e := s.e
	if _, err := blockdev.ParseURI(req.GetUri()); err != nil {
		return nil, err
	}
	if err := e.checkChildFree(req.GetUri()); err != nil {
		return nil, err
	}
	n, err := e.editNexus(req.GetNexus(), func(ne *nexusEntry) error {
		add := ne.n.AddChild
		if req.GetNorebuild() {
			// Out of sync until `kura rebuild start` (StartRebuild).
			add = ne.n.AddChildNoRebuild
		}
		if err := add(ctx, req.GetUri()); err != nil {
			return fmt.Errorf("nexus %q: add child: %w", ne.rec.Name, err)
		}
		ne.rec.Children = append(ne.rec.Children, req.GetUri())
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &enginev1.AddChildResponse{Nexus: n}, nil
}

func (s *nexusServer) RemoveChild(ctx context.Context, req *enginev1.RemoveChildRequest) (*enginev1.RemoveChildResponse, error) {
	n, err := s.e.editNexus(req.GetNexus(), func(ne *nexusEntry) error {
		if err := ne.n.RemoveChild(ctx, req.GetUri()); err != nil {
			return fmt.Errorf("nexus %q: remove child: %w", ne.rec.Name, err)
		}
		ne.rec.Children = slices.DeleteFunc(ne.rec.Children, func(c string) bool { return c == req.GetUri() })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &enginev1.RemoveChildResponse{Nexus: n}, nil
}

func (s *nexusServer) childOp(ctx context.Context, req *enginev1.ChildRequest, what string, f func(n *nexus.Nexus, ctx context.Context, uri string) error) (*enginev1.ChildResponse, error) {
	e := s.e
	e.opMu.Lock()
	defer e.opMu.Unlock()
	ne, err := e.nexusByName(req.GetNexus())
	if err != nil {
		return nil, err
	}
	if err := f(ne.n, ctx, req.GetUri()); err != nil {
		return nil, fmt.Errorf("nexus %q: %s child %q: %w", ne.rec.Name, what, req.GetUri(), err)
	}
	return &enginev1.ChildResponse{Nexus: e.nexusInfo(ne)}, nil
}

func (s *nexusServer) FaultChild(ctx context.Context, req *enginev1.ChildRequest) (*enginev1.ChildResponse, error) {
	return s.childOp(ctx, req, "fault", func(n *nexus.Nexus, ctx context.Context, uri string) error {
		return n.FaultChild(ctx, uri, "kura nexus fault")
	})
}

func (s *nexusServer) OfflineChild(ctx context.Context, req *enginev1.ChildRequest) (*enginev1.ChildResponse, error) {
	return s.childOp(ctx, req, "offline", (*nexus.Nexus).OfflineChild)
}

func (s *nexusServer) OnlineChild(ctx context.Context, req *enginev1.ChildRequest) (*enginev1.ChildResponse, error) {
	return s.childOp(ctx, req, "online", (*nexus.Nexus).OnlineChild)
}

func (e *Engine) nexusInfo(ne *nexusEntry) *enginev1.Nexus {
	st := ne.n.Status()
	out := &enginev1.Nexus{
		Name: st.Name, Uuid: st.UUID, Size: uint64(st.Size),
		State:        nexusState(st.State),
		RebuildCount: uint32(st.Rebuilds),
		Share:        e.shareInfo("nexus", ne.rec.Name),
	}
	for _, c := range st.Children {
		out.Children = append(out.Children, &enginev1.Child{
			Uri: c.URI, State: childState(c.State), Reason: c.Reason, RebuildProgress: uint32(c.RebuildProgress),
		})
	}
	return out
}

func nexusState(s nexus.State) enginev1.NexusState {
	switch s {
	case nexus.Online:
		return enginev1.NexusState_NEXUS_STATE_ONLINE
	case nexus.Degraded:
		return enginev1.NexusState_NEXUS_STATE_DEGRADED
	case nexus.Faulted:
		return enginev1.NexusState_NEXUS_STATE_FAULTED
	case nexus.Shutdown:
		return enginev1.NexusState_NEXUS_STATE_SHUTDOWN
	}
	return enginev1.NexusState_NEXUS_STATE_UNKNOWN
}

func childState(s nexus.ChildState) enginev1.ChildState {
	switch s {
	case nexus.ChildOpen:
		return enginev1.ChildState_CHILD_STATE_ONLINE
	case nexus.ChildRebuilding:
		return enginev1.ChildState_CHILD_STATE_REBUILDING
	case nexus.ChildFaulted:
		return enginev1.ChildState_CHILD_STATE_FAULTED
	case nexus.ChildOffline, nexus.ChildClosed:
		return enginev1.ChildState_CHILD_STATE_OFFLINE
	case nexus.ChildOutOfSync:
		return enginev1.ChildState_CHILD_STATE_OUT_OF_SYNC
	}
	return enginev1.ChildState_CHILD_STATE_UNKNOWN
}

// rebuildServer implements RebuildService over the nexus rebuild jobs.
type rebuildServer struct {
	enginev1.UnimplementedRebuildServiceServer
	e *Engine
}

func (s *rebuildServer) stats(req *enginev1.RebuildRequest) (*nexusEntry, rebuild.Stats, error) {
	ne, err := s.e.nexusByName(req.GetNexus())
	if err != nil {
		return nil, rebuild.Stats{}, err
	}
	st, err := ne.n.RebuildStats(req.GetUri())
	if err != nil {
		return nil, st, fmt.Errorf("nexus %q: %w", ne.rec.Name, err)
	}
	return ne, st, nil
}

func (s *rebuildServer) GetRebuildState(_ context.Context, req *enginev1.RebuildRequest) (*enginev1.GetRebuildStateResponse, error) {
	_, st, err := s.stats(req)
	if err != nil {
		return nil, err
	}
	return &enginev1.GetRebuildStateResponse{State: rebuildState(st.State)}, nil
}

func (s *rebuildServer) GetRebuildStats(_ context.Context, req *enginev1.RebuildRequest) (*enginev1.GetRebuildStatsResponse, error) {
	ne, st, err := s.stats(req)
	if err != nil {
		return nil, err
	}
	return &enginev1.GetRebuildStatsResponse{Stats: rebuildStats(st, ne.n.BlockSize(), false)}, nil
}

func (s *rebuildServer) GetRebuildProgress(_ context.Context, req *enginev1.RebuildRequest) (*enginev1.GetRebuildProgressResponse, error) {
	_, st, err := s.stats(req)
	if err != nil {
		return nil, err
	}
	return &enginev1.GetRebuildProgressResponse{Progress: uint32(st.Percent)}, nil
}

func (s *rebuildServer) GetRebuildHistory(_ context.Context, req *enginev1.GetRebuildHistoryRequest) (*enginev1.GetRebuildHistoryResponse, error) {
	ne, err := s.e.nexusByName(req.GetNexus())
	if err != nil {
		return nil, err
	}
	resp := &enginev1.GetRebuildHistoryResponse{}
	for _, r := range ne.n.RebuildHistory() {
		resp.Records = append(resp.Records, &enginev1.RebuildRecord{
			ChildUri: r.Child, SourceUri: r.Source, State: rebuildState(r.State),
			Stats:             rebuildStats(r.Stats, ne.n.BlockSize(), r.Kind == rebuild.Partial),
			StartTimeUnixNano: r.Start.UnixNano(), EndTimeUnixNano: r.End.UnixNano(),
		})
	}
	return resp, nil
}

// StartRebuild starts the rebuild of an out-of-sync (added with
// norebuild), faulted or offline child.
func (s *rebuildServer) StartRebuild(ctx context.Context, req *enginev1.RebuildRequest) (*enginev1.RebuildControlResponse, error) {
	if req.GetUri() == "" {
		return nil, fmt.Errorf("%w: child URI is empty", ErrInvalidArgument)
	}
	resp, err := s.control(req, func(n *nexus.Nexus, uri string) error { return n.StartRebuild(ctx, uri) })
	if err != nil || resp.GetState() != enginev1.RebuildState_REBUILD_STATE_STOPPED {
		return resp, err
	}
	// The job is no longer running: it finished already (a small or
	// partial rebuild) or could not start; say which.
	if ne, err := s.e.nexusByName(req.GetNexus()); err == nil {
		for _, c := range ne.n.Children() {
			if c.URI == req.GetUri() && c.State == nexus.ChildOpen {
				resp.State = enginev1.RebuildState_REBUILD_STATE_COMPLETED
			} else if c.URI == req.GetUri() && c.State == nexus.ChildFaulted {
				resp.State = enginev1.RebuildState_REBUILD_STATE_FAILED
			}
		}
	}
	return resp, nil
}

func (s *rebuildServer) control(req *enginev1.RebuildRequest, f func(n *nexus.Nexus, uri string) error) (*enginev1.RebuildControlResponse, error) {
	s.e.opMu.Lock()
	defer s.e.opMu.Unlock()
	ne, err := s.e.nexusByName(req.GetNexus())
	if err != nil {
		return nil, err
	}
	if err := f(ne.n, req.GetUri()); err != nil {
		return nil, fmt.Errorf("nexus %q: rebuild of %q: %w", ne.rec.Name, req.GetUri(), err)
	}
	resp := &enginev1.RebuildControlResponse{State: enginev1.RebuildState_REBUILD_STATE_STOPPED}
	if st, err := ne.n.RebuildStats(req.GetUri()); err == nil {
		resp.State = rebuildState(st.State)
	}
	return resp, nil
}

func (s *rebuildServer) PauseRebuild(_ context.Context, req *enginev1.RebuildRequest) (*enginev1.RebuildControlResponse, error) {
	return s.control(req, (*nexus.Nexus).RebuildPause)
}

func (s *rebuildServer) ResumeRebuild(_ context.Context, req *enginev1.RebuildRequest) (*enginev1.RebuildControlResponse, error) {
	return s.control(req, (*nexus.Nexus).RebuildResume)
}

func (s *rebuildServer) StopRebuild(_ context.Context, req *enginev1.RebuildRequest) (*enginev1.RebuildControlResponse, error) {
	return s.control(req, (*nexus.Nexus).RebuildStop)
}

func rebuildState(s rebuild.State) enginev1.RebuildState {
	switch s {
	case rebuild.Running:
		return enginev1.RebuildState_REBUILD_STATE_RUNNING
	case rebuild.Paused:
		return enginev1.RebuildState_REBUILD_STATE_PAUSED
	case rebuild.Completed:
		return enginev1.RebuildState_REBUILD_STATE_COMPLETED
	case rebuild.Failed:
		return enginev1.RebuildState_REBUILD_STATE_FAILED
	case rebuild.Stopped:
		return enginev1.RebuildState_REBUILD_STATE_STOPPED
	}
	return enginev1.RebuildState_REBUILD_STATE_UNKNOWN
}

func rebuildStats(st rebuild.Stats, blockSize int, partial bool) *enginev1.RebuildStats {
	bs := int64(blockSize)
	if bs <= 0 {
		bs = 512
	}
	return &enginev1.RebuildStats{
		BlocksTotal:       uint64(st.BytesTotal / bs),
		BlocksRecovered:   uint64(st.BytesDone / bs),
		BlocksTransferred: uint64(st.BytesCopied / bs),
		BlocksRemaining:   uint64((st.BytesTotal - st.BytesDone) / bs),
		Progress:          uint32(st.Percent),
		BlockSize:         uint32(bs),
		TasksTotal:        uint64(st.SegmentsTotal),
		TasksActive:       uint64(st.SegmentsTotal - st.SegmentsDone),
		Partial:           partial,
	}
}
