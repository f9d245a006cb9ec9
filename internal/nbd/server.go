// Package nbd is Kura's NBD (Network Block Device) server: it exports
// blockdev.Device values over the fixed-newstyle NBD protocol to qemu,
// libnbd tools (nbdinfo, nbdcopy, fio's nbd engine) and the Linux kernel
// client. See docs/nbd.md for the protocol subset and the I/O design.
package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/kura-io/kura/internal/blockdev"
)

// Config configures a Server.
type Config struct {
	// ListenAddr is the TCP address to listen on; default 127.0.0.1:10809.
	ListenAddr string
	// Logger receives connection-level events; default slog.Default().
	Logger *slog.Logger
	// HandshakeTimeout bounds the option negotiation of one connection;
	// default 30 s.
	HandshakeTimeout time.Duration
	// MaxWorkers bounds the I/O goroutines per connection; default 16.
	MaxWorkers int
	// NoQueues keeps connections off per-thread I/O queues (ring mode,
	// ring.go) even where the device offers them.
	NoQueues bool
}

// ExportOptions describe how a device is exported.
type ExportOptions struct {
	// ReadOnly exports the device read-only: writes fail with EPERM.
	ReadOnly bool
	// Description is shown by nbdinfo and in NBD_OPT_LIST.
	Description string
	// AllowedClients lists client IPs or CIDR prefixes that may see and
	// open the export; empty allows any client.
	AllowedClients []string
}

// ExportInfo describes an export.
type ExportInfo struct {
	Name           string
	Description    string
	Size           int64
	BlockSize      int
	ReadOnly       bool
	AllowedClients []string
	// Connections is the number of clients in the transmission phase.
	Connections int
}

// export is one named device. Immutable after AddExport except conns,
// which is guarded by Server.mu.
type export struct {
	name    string
	dev     blockdev.Device
	opts    ExportOptions
	allowed []netip.Prefix
	conns   map[*conn]struct{}
}

// allows reports whether a client at addr may see the export.
func (e *export) allows(addr netip.Addr) bool {
	if len(e.allowed) == 0 {
		return true
	}
	for _, p := range e.allowed {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Server is an NBD server. Its methods are safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	wg           sync.WaitGroup // accept loop, ctx watcher, one per connection
	workerStarts atomic.Int64   // per-connection workers started (tests, diagnostics)
	pollWaits    atomic.Int64   // socket reads that waited in poll(2) first (tests, diagnostics)
	directWrites atomic.Int64   // reply batches written by the completing goroutine (tests, diagnostics)
	directShort  atomic.Int64   // of those, batches the socket took only part of
	largeWritevs atomic.Int64   // large replies written by writev outside the direct path (tests)
	rawEnters    atomic.Int64   // sockets taken out of the netpoller (sock.go; tests, diagnostics)
	rawConns     atomic.Int64   // connections whose socket is out of the netpoller now
	ringConns    atomic.Int64   // connections in ring mode now (ring.go)
	ringEnters   atomic.Int64   // times a connection entered ring mode (tests, diagnostics)
	rawIdleMs    atomic.Int64   // a raw-mode reader idle this long goes back to the netpoller (tests change it)
	fastNs       atomic.Int64   // fastDeviceNs (tests raise it: the race detector slows memory devices)

	mu      sync.Mutex // guards the fields below and every export's conns; never held across I/O
	ln      net.Listener
	exports map[string]*export
	conns   map[*conn]struct{}
	started bool
	closed  bool
	closeCh chan struct{} // closed by stop; ends the ctx watcher
}

// NewServer returns a server that is not yet listening.
func NewServer(cfg Config) *Server {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = defaultListenAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = 16
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "nbd"),
		exports: map[string]*export{},
		conns:   map[*conn]struct{}{},
		closeCh: make(chan struct{}),
	}
	s.rawIdleMs.Store(rawIdleMs)
	s.fastNs.Store(fastDeviceNs)
	return s
}

// ServerStats counts events of the server's data path (diagnostics,
// metrics).
type ServerStats struct {
	// RingEnters: times a connection entered ring mode (ring.go);
	// RingConns: connections in ring mode now.
	RingEnters, RingConns int64
	// RawEnters: times a socket left the netpoller (sock.go).
	RawEnters int64
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{RingEnters: s.ringEnters.Load(), RingConns: s.ringConns.Load(), RawEnters: s.rawEnters.Load()}
}

// Start listens on the configured address and serves clients until Close,
// or until ctx is cancelled.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.started {
		return ErrAlreadyStarted
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("nbd: listen %s: %w", s.cfg.ListenAddr, err)
	}
	s.ln = ln
	s.started = true
	s.wg.Add(2)
	go s.acceptLoop(ln)
	go func() { // owned: exits on ctx cancel or Close
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			_ = s.stop()
		case <-s.closeCh:
		}
	}()
	s.log.Info("nbd server listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the listening address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops accepting, disconnects every client after its in-flight
// requests finish, and waits for all goroutines. Devices are not closed.
func (s *Server) Close() error {
	err := s.stop()
	s.wg.Wait()
	return err
}

// stop closes the listener and shuts every connection down without
// waiting; it is idempotent.
func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.closeCh)
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.shutdown()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("nbd accept failed", "err", err)
			}
			return
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			if c.exp != nil {
				delete(c.exp.conns, c)
			}
			s.mu.Unlock()
			close(c.done)
		}()
	}
}

// AddExport exports dev under name. The server does not take ownership of
// dev: the caller closes it after RemoveExport or Close.
func (s *Server) AddExport(name string, dev blockdev.Device, opts ExportOptions) error {
	if dev == nil {
		return fmt.Errorf("%w %q: nil device", ErrInvalidExport, name)
	}
	if len(name) > maxStringLen || !utf8.ValidString(name) {
		return fmt.Errorf("%w %q: name must be valid UTF-8 of at most %d bytes", ErrInvalidExport, name, maxStringLen)
	}
	if len(opts.Description) > maxStringLen || !utf8.ValidString(opts.Description) {
		return fmt.Errorf("%w %q: description must be valid UTF-8 of at most %d bytes", ErrInvalidExport, name, maxStringLen)
	}
	bs := dev.BlockSize()
	if bs <= 0 || bs > 65536 || bs&(bs-1) != 0 || dev.Size() < 0 || dev.Size()%int64(bs) != 0 {
		return fmt.Errorf("%w %q: bad geometry (size %d, block size %d)", ErrInvalidExport, name, dev.Size(), bs)
	}
	allowed, err := parseAllowed(opts.AllowedClients)
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidExport, name, err)
	}
	opts.AllowedClients = append([]string(nil), opts.AllowedClients...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if _, ok := s.exports[name]; ok {
		return fmt.Errorf("%w: %q", ErrExportExists, name)
	}
	s.exports[name] = &export{name: name, dev: dev, opts: opts, allowed: allowed, conns: map[*conn]struct{}{}}
	return nil
}

func parseAllowed(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, a := range list {
		a = strings.TrimSpace(a)
		if strings.Contains(a, "/") {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, fmt.Errorf("allowed client %q: %v", a, err)
			}
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("allowed client %q: want an IP or CIDR", a)
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

// RemoveExport withdraws an export, disconnects its clients and waits
// until none of them touches the device any more.
func (s *Server) RemoveExport(name string) error {
	s.mu.Lock()
	e, ok := s.exports[name]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrExportNotFound, name)
	}
	delete(s.exports, name)
	conns := make([]*conn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
		c.shutdown()
	}
	s.mu.Unlock()
	for _, c := range conns {
		<-c.done
	}
	return nil
}

// Exports lists the exports, sorted by name.
func (s *Server) Exports() []ExportInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ExportInfo, 0, len(s.exports))
	for _, e := range s.exports {
		out = append(out, ExportInfo{
			Name: e.name, Description: e.opts.Description,
			Size: e.dev.Size(), BlockSize: e.dev.BlockSize(),
			ReadOnly:       e.opts.ReadOnly,
			AllowedClients: append([]string(nil), e.opts.AllowedClients...),
			Connections:    len(e.conns),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// lookup finds the export a client asked for. An empty name selects the
// export named "" if there is one, else the only export visible to the
// client. Invisible exports are reported as unknown.
func (s *Server) lookup(name string, addr netip.Addr) *export {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.exports[name]; ok {
		if e.allows(addr) {
			return e
		}
		return nil
	}
	if name != "" {
		return nil
	}
	var only *export
	for _, e := range s.exports {
		if e.allows(addr) {
			if only != nil {
				return nil
			}
			only = e
		}
	}
	return only
}

// visible lists the exports a client at addr may see, sorted by name.
func (s *Server) visible(addr netip.Addr) []*export {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*export, 0, len(s.exports))
	for _, e := range s.exports {
		if e.allows(addr) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// attach registers c as a transmission-phase client of e. It fails when e
// was removed or the server is closing.
func (s *Server) attach(c *conn, e *export) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.exports[e.name] != e {
		return false
	}
	e.conns[c] = struct{}{}
	c.exp = e
	return true
}

// shuttingDown reports whether Close was called.
func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// URI returns the NBD URI of an export: nbd://host:port/export.
func URI(host string, port int, exportName string) string {
	return "nbd://" + net.JoinHostPort(host, fmt.Sprint(port)) + "/" + escapePath(exportName)
}

// escapePath percent-encodes what a URI path cannot hold verbatim.
func escapePath(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("-._~/:@!$&'()*+,;=", ch) >= 0 {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[ch>>4])
		b.WriteByte(hex[ch&15])
	}
	return b.String()
}

var _ io.Closer = (*Server)(nil)
