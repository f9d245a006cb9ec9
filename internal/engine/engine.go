package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvmetcp"
)

// Engine is one storage engine. Create it with New and run it with Run.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	reg     *blockdev.Registry
	started time.Time

	// opMu serializes state-changing operations (and so state-file
	// writes). It is held across control-path I/O such as pool creation,
	// never by the data path.
	opMu sync.Mutex

	// mu guards the object maps. Held only briefly, never across I/O.
	mu struct {
		sync.RWMutex
		pools  map[string]*poolEntry  // by pool name
		bdevs  map[string]*bdevEntry  // by bdev name
		shares map[string]*shareEntry // by shareKey(kind, name)
		// claims maps a canonical device key to the owner using it.
		claims map[string]string
		// refs counts open borrowed handles (bdev:// opens) per object key.
		refs    map[string]int
		nexuses map[string]*nexusEntry // by nexus name
		// lostBdevs and lostNexuses could not be re-created at start
		// (e.g. a remote target was down). They stay in the state file so
		// the next start retries, are listed as unavailable, and are
		// forgotten by a destroy.
		lostBdevs   map[string]lostBdev
		lostNexuses map[string]lostNexus
	}

	front frontends

	running     atomic.Bool
	ready       chan struct{}
	grpcAddr    net.Addr
	metricsAddr net.Addr
}

// New validates cfg and returns an engine that is not yet running.
func New(cfg Config) (*Engine, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	e := &Engine{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "engine"),
		reg:   blockdev.NewRegistry(),
		ready: make(chan struct{}),
	}
	e.mu.pools = map[string]*poolEntry{}
	e.mu.bdevs = map[string]*bdevEntry{}
	e.mu.shares = map[string]*shareEntry{}
	e.mu.claims = map[string]string{}
	e.mu.refs = map[string]int{}
	e.mu.nexuses = map[string]*nexusEntry{}
	e.mu.lostBdevs = map[string]lostBdev{}
	e.mu.lostNexuses = map[string]lostNexus{}
	e.reg.Register("bdev", e.openLocal)
	e.reg.Register("loopback", e.openLocal)
	nvmetcp.RegisterSchemeWith(e.reg, e.cfg.Logger.With("component", "nvmf-initiator"))
	return e, nil
}

// Registry is the engine's device registry (built-in schemes plus bdev://,
// loopback:// and, when built in, nvmf://).
func (e *Engine) Registry() *blockdev.Registry { return e.reg }

// Ready is closed once the engine serves its API.
func (e *Engine) Ready() <-chan struct{} { return e.ready }

// GRPCAddr is the address the API listens on; valid after Ready.
func (e *Engine) GRPCAddr() net.Addr { return e.grpcAddr }

// MetricsAddr is the address of the metrics endpoint (nil when disabled);
// valid after Ready.
func (e *Engine) MetricsAddr() net.Addr { return e.metricsAddr }

// Run starts the frontends and the gRPC API, re-creates the persisted
// state, and serves until ctx is cancelled; then it shuts down cleanly:
// stops the API, removes exports, and closes bdevs and pools (they stay in
// the state file and are re-imported on the next start).
//
// Run may be called once. Only one engine at a time may use a data
// directory (an exclusive lock on DataDir/engine.lock).
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: engine already ran", ErrInvalidArgument)
	}
	e.started = time.Now()
	unlock, err := lockDataDir(e.cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := loadState(e.cfg.DataDir)
	if err != nil {
		return err
	}

	lis := e.cfg.GRPCListener
	if lis == nil {
		lis, err = net.Listen("tcp", e.cfg.GRPCAddr)
		if err != nil {
			return fmt.Errorf("gRPC listen: %w", err)
		}
	}
	e.grpcAddr = lis.Addr()

	if err := e.front.start(ctx, e); err != nil {
		lis.Close()
		return err
	}

	e.restore(ctx, st)

	waitMetrics := func() {}
	if a := e.cfg.MetricsAddr; a != "" && a != Off {
		w, err := e.serveMetrics(ctx, a)
		if err != nil {
			lis.Close()
			e.shutdown()
			return err
		}
		waitMetrics = w
	}

	srv, hs := e.newGRPCServer()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr <- srv.Serve(lis)
	}()
	e.log.Info("engine started", "node", e.cfg.NodeName, "version", e.cfg.Version,
		"grpc", e.grpcAddr.String(), "nvmf", e.front.nvmfAddr(), "nbd", e.front.nbdAddr(), "data_dir", e.cfg.DataDir)
	close(e.ready)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			runErr = fmt.Errorf("gRPC serve: %w", err)
		}
	}

	hs.Shutdown()
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
		<-stopped
	}
	wg.Wait()
	waitMetrics()
	e.shutdown()
	e.log.Info("engine stopped")
	return runErr
}

func (e *Engine) newGRPCServer() (*grpc.Server, *health.Server) {
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(e.unaryInterceptor))
	api := &apiServer{e: e}
	enginev1.RegisterPoolServiceServer(srv, api)
	enginev1.RegisterReplicaServiceServer(srv, api)
	enginev1.RegisterBdevServiceServer(srv, api)
	enginev1.RegisterHostServiceServer(srv, api)
	enginev1.RegisterNexusServiceServer(srv, &nexusServer{e: e})
	enginev1.RegisterRebuildServiceServer(srv, &rebuildServer{e: e})
	enginev1.RegisterSnapshotServiceServer(srv, &snapshotServer{e: e})
	hs := health.NewServer()
	for _, name := range []string{"",
		enginev1.PoolService_ServiceDesc.ServiceName,
		enginev1.ReplicaService_ServiceDesc.ServiceName,
		enginev1.BdevService_ServiceDesc.ServiceName,
		enginev1.HostService_ServiceDesc.ServiceName,
	} {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs
}

// unaryInterceptor converts engine errors to gRPC status (the one mapping
// in errors.go) and logs failed calls.
func (e *Engine) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		err = toStatus(err)
		e.log.Debug("rpc failed", "method", info.FullMethod, "err", err)
	}
	return resp, err
}

// lostBdev is a persisted bdev that could not be reopened at start.
type lostBdev struct {
	rec bdevRecord
	err error
}

// lostNexus is a persisted nexus that could not be re-created at start.
type lostNexus struct {
	rec nexusRecord
	err error
}

// apiServer implements the pool, replica, bdev and host services.
type apiServer struct {
	enginev1.UnimplementedPoolServiceServer
	enginev1.UnimplementedReplicaServiceServer
	enginev1.UnimplementedBdevServiceServer
	enginev1.UnimplementedHostServiceServer
	e *Engine
}

// shutdown removes exports and closes bdevs and pools. They stay in the
// state file.
func (e *Engine) shutdown() {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	e.front.close(e)
	e.mu.Lock()
	bdevs := e.mu.bdevs
	pools := e.mu.pools
	nexuses := e.mu.nexuses
	e.mu.nexuses = map[string]*nexusEntry{}
	e.mu.bdevs = map[string]*bdevEntry{}
	e.mu.pools = map[string]*poolEntry{}
	e.mu.shares = map[string]*shareEntry{}
	e.mu.claims = map[string]string{}
	e.mu.Unlock()
	// Nexuses first: they hold children open (bdevs, replicas).
	for _, ne := range nexuses {
		if err := ne.n.Shutdown(context.Background()); err != nil {
			e.log.Warn("shutdown nexus", "nexus", ne.rec.Name, "err", err)
		}
	}
	for _, b := range bdevs {
		if err := b.dev.Flush(); err != nil {
			e.log.Warn("flush bdev", "bdev", b.name, "err", err)
		}
		if err := b.dev.Close(); err != nil {
			e.log.Warn("close bdev", "bdev", b.name, "err", err)
		}
	}
	for _, p := range pools {
		p.close(e.log)
	}
}

// save writes the persistent state built from the live maps. Callers hold
// opMu.
func (e *Engine) save() error {
	st := e.snapshotState()
	if err := saveState(e.cfg.DataDir, st); err != nil {
		e.log.Error("save state", "err", err)
		return err
	}
	return nil
}

func (e *Engine) snapshotState() persistedState {
	e.mu.RLock()
	defer e.mu.RUnlock()
	st := persistedState{Version: stateVersion}
	for _, p := range e.mu.pools {
		st.Pools = append(st.Pools, poolRecord{Name: p.name, UUID: p.uuid, Disk: p.disk})
	}
	for _, b := range e.mu.bdevs {
		st.Bdevs = append(st.Bdevs, bdevRecord{Name: b.name, URI: b.uri})
	}
	for _, s := range e.mu.shares {
		st.Shares = append(st.Shares, s.rec)
	}
	for _, ne := range e.mu.nexuses {
		if !ne.rec.Shutdown {
			st.Nexuses = append(st.Nexuses, ne.rec)
		}
	}
	for _, l := range e.mu.lostBdevs {
		st.Bdevs = append(st.Bdevs, l.rec)
	}
	for _, l := range e.mu.lostNexuses {
		st.Nexuses = append(st.Nexuses, l.rec)
	}
	return st
}

// restore re-creates the persisted state. Failures are logged and leave
// the object listed as faulted (pools) or dropped (shares of missing
// objects stay in the file until the object is destroyed).
func (e *Engine) restore(ctx context.Context, st persistedState) {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	for _, r := range st.Pools {
		if err := e.importPoolLocked(ctx, r.Disk, r.Name); err != nil {
			e.log.Error("re-import pool", "pool", r.Name, "disk", r.Disk, "err", err)
			e.mu.Lock()
			e.mu.pools[r.Name] = &poolEntry{name: r.Name, uuid: r.UUID, disk: r.Disk, err: err}
			e.mu.Unlock()
			continue
		}
		e.log.Info("pool re-imported", "pool", r.Name, "disk", r.Disk)
	}
	for _, r := range st.Bdevs {
		if _, err := e.createBdevLocked(ctx, r.URI, r.Name); err != nil {
			e.log.Error("reopen bdev", "bdev", r.Name, "uri", r.URI, "err", err)
			e.mu.Lock()
			e.mu.lostBdevs[r.Name] = lostBdev{rec: r, err: err}
			e.mu.Unlock()
		}
	}
	for _, r := range st.Nexuses {
		healthyBefore := e.recordedHealthy(ctx, r)
		ne, err := e.createNexusLocked(ctx, r)
		if err != nil {
			e.log.Error("re-create nexus", "nexus", r.Name, "err", err)
			e.mu.Lock()
			e.mu.lostNexuses[r.Name] = lostNexus{rec: r, err: err}
			e.mu.Unlock()
			continue
		}
		e.resyncAfterRestart(ctx, ne, healthyBefore)
	}
	for _, r := range st.Shares {
		if _, err := e.shareLocked(ctx, r); err != nil {
			e.log.Error("re-create share", "kind", r.Kind, "name", r.Name, "err", err)
			// Keep it so that a later restart (disk back) retries.
			e.mu.Lock()
			e.mu.shares[shareKey(r.Kind, r.Name)] = &shareEntry{rec: r, err: err}
			e.mu.Unlock()
			continue
		}
	}
	_ = e.save()
}
