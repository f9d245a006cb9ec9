package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nexus"
)

// serveMetrics serves Prometheus metrics (text exposition format 0.0.4) on
// addr until ctx is cancelled. The returned wait blocks until the server
// goroutine has stopped.
func (e *Engine) serveMetrics(ctx context.Context, addr string) (wait func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	e.metricsAddr = lis.Addr()
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		e.writeMetrics(w)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error("metrics server", "err", err)
		}
	}()
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	return func() {
		stop()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}, nil
}

// metricsWriter writes one metric family at a time.
type metricsWriter struct {
	w    io.Writer
	seen map[string]bool
}

func (m *metricsWriter) metric(name, help, typ string, value float64, labels ...string) {
	if !m.seen[name] {
		m.seen[name] = true
		fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
		}
		b.WriteByte('}')
	}
	fmt.Fprintf(m.w, "%s %g\n", b.String(), value)
}

func (e *Engine) writeMetrics(w io.Writer) {
	m := &metricsWriter{w: w, seen: map[string]bool{}}
	m.metric("kura_engine_info", "Engine build and node.", "gauge", 1, "version", e.cfg.Version, "node", e.cfg.NodeName)
	m.metric("kura_engine_uptime_seconds", "Seconds since the engine started.", "gauge", time.Since(e.started).Seconds())

	e.mu.RLock()
	pools := make([]*poolEntry, 0, len(e.mu.pools))
	for _, pe := range e.mu.pools {
		pools = append(pools, pe)
	}
	nexuses := make([]*nexusEntry, 0, len(e.mu.nexuses))
	for _, ne := range e.mu.nexuses {
		nexuses = append(nexuses, ne)
	}
	shares := len(e.mu.shares)
	bdevs := len(e.mu.bdevs)
	e.mu.RUnlock()
	slices.SortFunc(pools, func(a, b *poolEntry) int { return cmpStr(a.name, b.name) })
	slices.SortFunc(nexuses, func(a, b *nexusEntry) int { return cmpStr(a.rec.Name, b.rec.Name) })

	for _, pe := range pools {
		online := 0.0
		if pe.p != nil {
			online = 1
		}
		m.metric("kura_pool_online", "1 when the pool is imported and online, 0 when faulted.", "gauge", online, "pool", pe.name)
	}
	for _, pe := range pools {
		if pe.p == nil {
			continue
		}
		st := pe.p.Stats()
		m.metric("kura_pool_capacity_bytes", "Pool data capacity.", "gauge", float64(st.Capacity), "pool", pe.name)
		m.metric("kura_pool_used_bytes", "Pool space held by replicas and snapshots.", "gauge", float64(st.Used), "pool", pe.name)
		m.metric("kura_pool_replicas", "Replicas in the pool.", "gauge", float64(len(pe.p.Replicas())), "pool", pe.name)
	}
	for _, pe := range pools {
		if pe.p == nil {
			continue
		}
		for _, r := range pe.p.Replicas() {
			info := r.Info()
			m.metric("kura_replica_size_bytes", "Replica size.", "gauge", float64(info.Size), "pool", pe.name, "replica", info.Name)
		}
	}
	for _, pe := range pools {
		if pe.p == nil {
			continue
		}
		for _, r := range pe.p.Replicas() {
			info := r.Info()
			m.metric("kura_replica_allocated_bytes", "Pool space held by the replica.", "gauge", float64(info.AllocatedBytes), "pool", pe.name, "replica", info.Name)
		}
	}
	for _, ne := range nexuses {
		st := ne.n.Status()
		for _, s := range []nexus.State{nexus.Online, nexus.Degraded, nexus.Faulted, nexus.Shutdown} {
			v := 0.0
			if st.State == s {
				v = 1
			}
			m.metric("kura_nexus_state", "1 for the nexus' current state.", "gauge", v, "nexus", st.Name, "state", s.String())
		}
	}
	for _, ne := range nexuses {
		st := ne.n.Status()
		healthy := 0
		for _, c := range st.Children {
			if c.State.Healthy() {
				healthy++
			}
		}
		m.metric("kura_nexus_children_healthy", "Healthy children of the nexus.", "gauge", float64(healthy), "nexus", st.Name)
	}
	for _, ne := range nexuses {
		st := ne.n.Status()
		m.metric("kura_nexus_rebuilds_running", "Rebuild jobs running in the nexus.", "gauge", float64(st.Rebuilds), "nexus", st.Name)
	}
	e.writeFrontendMetrics(m)
	m.metric("kura_bdevs", "Bdevs open in the engine.", "gauge", float64(bdevs))
	m.metric("kura_shares", "Exports (NVMe/TCP subsystems and NBD exports).", "gauge", float64(shares))
}

// writeFrontendMetrics reports the exporters' ring mode (per-thread
// io_uring queues for pipelining connections; docs/nbd.md).
func (e *Engine) writeFrontendMetrics(m *metricsWriter) {
	type ring struct {
		frontend      string
		enters, conns int64
	}
	var rs []ring
	if e.front.nbd != nil {
		st := e.front.nbd.Stats()
		rs = append(rs, ring{"nbd", st.RingEnters, st.RingConns})
	}
	if e.front.nvmf.t != nil {
		st := e.front.nvmf.t.Stats()
		rs = append(rs, ring{"nvmf", st.RingEnters, st.RingQueues})
	}
	for _, r := range rs {
		m.metric("kura_ring_mode_entries_total", "Times a connection (an NVMe/TCP I/O queue) entered ring mode.", "counter", float64(r.enters), "frontend", r.frontend)
	}
	m.metric("kura_ring_threads", "Threads waiting on a per-thread io_uring queue (ring mode, every frontend).", "gauge", float64(blockdev.ThreadQueues()))
	m.metric("kura_gomaxprocs", "GOMAXPROCS of the engine now (raised while ring threads hold Ps; cli engineGOMAXPROCS).", "gauge", float64(runtime.GOMAXPROCS(0)))
	for _, r := range rs {
		m.metric("kura_ring_mode_connections", "Connections (NVMe/TCP I/O queues) in ring mode now.", "gauge", float64(r.conns), "frontend", r.frontend)
	}
}
