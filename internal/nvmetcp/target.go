package nvmetcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// Default values of TargetConfig.
const (
	DefaultListenAddr       = "127.0.0.1:8420"
	DefaultKeepAliveTimeout = 120 * time.Second
	defaultWorkers          = 16
	maxTransferShift        = 20
	maxTransfer             = 1 << maxTransferShift // MDTS 8 with 4 KiB pages
	mdts                    = 8
	maxICD                  = 16384 // IOCCSZ 1028
	ioccsz                  = (maxICD + 64) / 16
	mqes                    = 1023
	icrespTimeout           = 10 * time.Second
	pduTimeout              = 30 * time.Second
)

// TargetConfig configures a Target.
type TargetConfig struct {
	// ListenAddr is the TCP address to listen on (default 127.0.0.1:8420;
	// loopback unless told otherwise). Port 0 picks a free port.
	ListenAddr string
	// StateDir holds persisted reservations (one JSON file per subsystem).
	// Empty: reservations live in memory only.
	StateDir string
	// CntlIDMin/CntlIDMax bound the controller IDs handed out (default
	// 1..0xFFEF). Give each target of a multipath set a disjoint range.
	CntlIDMin, CntlIDMax uint16
	// KeepAliveTimeout applies to discovery controllers whose host asked
	// for KATO 0 (default 120 s). I/O controllers use the host's KATO.
	KeepAliveTimeout time.Duration
	// WorkersPerQueue caps the I/O goroutines of one queue (default 16).
	WorkersPerQueue int
	// DiscoveryAddr (host:port) is the address discovery log entries
	// advertise. Default: the listen address, or for a wildcard listener
	// the local address of the discovery connection. Set it when hosts
	// reach the target through NAT or port forwarding.
	DiscoveryAddr string
	// QueueBufferLimit bounds the data buffers one queue holds for commands
	// in flight (default 64 MiB). Beyond it, new commands wait (no R2T is
	// sent, reads are not started) until buffers are released; a single
	// command always proceeds.
	QueueBufferLimit int64
	// NoQueues keeps every I/O queue on the device's shared ring: no ring
	// mode (ring.go) even where the device offers per-thread queues.
	NoQueues bool
	// PortID is reported in discovery log entries (default 1).
	PortID uint16
	Logger *slog.Logger
}

// SubsystemConfig describes one export: a subsystem with one namespace
// (NSID 1) backed by Device.
type SubsystemConfig struct {
	NQN    string
	Device blockdev.Device
	Serial string // ≤ 20 ASCII chars; default derived from the NQN
	Model  string // ≤ 40 ASCII chars; default "Kura"
	NGUID  [16]byte
	UUID   [16]byte
	// AllowedHosts lists host NQNs that may connect. Empty refuses every
	// host unless AllowAnyHost is set.
	AllowedHosts []string
	AllowAnyHost bool
	// Snapshots, when set, serves Kura's snapshot admin commands (opcodes
	// 0xC1/0xC2/0xC4) for the namespace; without it they fail with Invalid
	// Command Opcode.
	Snapshots SnapshotHook
}

// SubsystemInfo reports a subsystem and its connected controllers.
type SubsystemInfo struct {
	NQN          string
	Serial       string
	Model        string
	Size         int64
	BlockSize    int
	ANAState     uint8
	AllowedHosts []string
	AllowAnyHost bool
	Controllers  []ControllerInfo
}

// ControllerInfo describes one connected controller.
type ControllerInfo struct {
	CNTLID   uint16
	HostNQN  string
	IOQueues int
}

// Target is an NVMe/TCP target: one listener serving I/O subsystems and the
// discovery controller.
type Target struct {
	cfg TargetConfig
	log *slog.Logger

	// Batches of asynchronous completions the device's reaper wrote itself
	// (direct.go), and of those the ones the socket took only part of
	// (tests, diagnostics).
	directWrites, directShort atomic.Int64
	// I/O queues in ring mode now, and times one entered it (ring.go;
	// tests, diagnostics).
	ringConns, ringEnters atomic.Int64
	ringRetryDelay        time.Duration // ring.go's ringRetryDelay (tests shorten it)

	mu      sync.Mutex // guards everything below
	ln      net.Listener
	subs    map[string]*subsystem
	disc    *subsystem // the discovery subsystem
	conns   map[*queue]struct{}
	genctr  uint64 // discovery log generation
	closed  bool
	started bool

	wg sync.WaitGroup // accept loop and connection goroutines
}

// NewTarget validates cfg and returns a stopped target.
func NewTarget(cfg TargetConfig) (*Target, error) {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = DefaultListenAddr
	}
	if cfg.CntlIDMin == 0 {
		cfg.CntlIDMin = 1
	}
	if cfg.CntlIDMax == 0 {
		cfg.CntlIDMax = 0xFFEF
	}
	if cfg.CntlIDMin > cfg.CntlIDMax || cfg.CntlIDMax > 0xFFEF {
		return nil, fmt.Errorf("%w: controller ID range %d..%d (must lie in 1..65519)", ErrInvalidConfig, cfg.CntlIDMin, cfg.CntlIDMax)
	}
	if cfg.KeepAliveTimeout <= 0 {
		cfg.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if cfg.WorkersPerQueue <= 0 {
		cfg.WorkersPerQueue = defaultWorkers
	}
	if cfg.QueueBufferLimit <= 0 {
		cfg.QueueBufferLimit = 64 << 20
	}
	if cfg.PortID == 0 {
		cfg.PortID = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Target{cfg: cfg, log: cfg.Logger.With("component", "nvmetcp-target"),
		subs: map[string]*subsystem{}, conns: map[*queue]struct{}{}, genctr: 1, ringRetryDelay: ringRetryDelay}
	t.disc = newSubsystem(t, SubsystemConfig{NQN: nvme.DiscoveryNQN, AllowAnyHost: true, Serial: "kura-discovery", Model: "Kura Discovery"})
	t.disc.discovery = true
	return t, nil
}

// Start listens and serves connections until Close. ctx bounds only the
// start-up (listening).
func (t *Target) Start(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.started {
		return fmt.Errorf("%w: already started", ErrInvalidConfig)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", t.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("nvmetcp: listen %s: %w", t.cfg.ListenAddr, err)
	}
	t.ln, t.started = ln, true
	t.wg.Add(1)
	go t.acceptLoop(ln)
	t.log.Info("nvme/tcp target listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the listening address (nil before Start).
func (t *Target) Addr() net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

// TargetStats counts events of the target's data path (diagnostics,
// tests).
type TargetStats struct {
	// DirectWrites: batches of completions written by the goroutine that
	// reported them (direct.go).
	DirectWrites int64
	// RingEnters: times an I/O queue entered ring mode (ring.go);
	// RingQueues: queues in ring mode now.
	RingEnters, RingQueues int64
}

// Stats returns the target's counters.
func (t *Target) Stats() TargetStats {
	return TargetStats{DirectWrites: t.directWrites.Load(), RingEnters: t.ringEnters.Load(), RingQueues: t.ringConns.Load()}
}

// Close stops listening, disconnects every host and waits for all
// connection goroutines. Devices are not closed (the caller owns them).
func (t *Target) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	ln := t.ln
	conns := make([]*queue, 0, len(t.conns))
	for q := range t.conns {
		conns = append(conns, q)
	}
	subs := make([]*subsystem, 0, len(t.subs)+1)
	for _, s := range t.subs {
		subs = append(subs, s)
	}
	subs = append(subs, t.disc)
	t.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, q := range conns {
		q.shutdown()
	}
	for _, s := range subs {
		s.destroyAll("target closing")
	}
	t.wg.Wait()
	return nil
}

func (t *Target) acceptLoop(ln net.Listener) {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary (EMFILE...): back off instead of spinning.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			t.log.Warn("accept failed", "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		q := newQueue(t, c)
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			c.Close()
			continue
		}
		t.conns[q] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			q.serve()
			t.mu.Lock()
			delete(t.conns, q)
			t.mu.Unlock()
		}()
	}
}

// AddSubsystem exports cfg.Device as subsystem cfg.NQN with namespace 1.
// Persisted reservations for the NQN are loaded from StateDir.
func (t *Target) AddSubsystem(cfg SubsystemConfig) error {
	if err := validateSubsysNQN(cfg.NQN); err != nil {
		return err
	}
	if cfg.Device == nil {
		return fmt.Errorf("%w: subsystem %s has no device", ErrInvalidConfig, cfg.NQN)
	}
	if bs := cfg.Device.BlockSize(); bs != 512 && bs != 4096 {
		return fmt.Errorf("%w: block size %d (want 512 or 4096)", ErrInvalidConfig, bs)
	}
	for _, h := range cfg.AllowedHosts {
		if err := nvme.ValidateNQN(h); err != nil {
			return fmt.Errorf("allowed host: %w", err)
		}
	}
	if len(cfg.Serial) > 20 || len(cfg.Model) > 40 {
		return fmt.Errorf("%w: serial ≤ 20 and model ≤ 40 characters", ErrInvalidConfig)
	}
	s := newSubsystem(t, cfg)
	if err := s.resv.load(); err != nil {
		return err
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	if _, ok := t.subs[cfg.NQN]; ok {
		t.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrExists, cfg.NQN)
	}
	t.subs[cfg.NQN] = s
	t.genctr++
	t.mu.Unlock()
	t.disc.postAEN(nvme.AECDiscLog, nvme.AENResult(nvme.AENTypeNotice, nvme.AENNoticeDiscLog, nvme.LogDiscovery))
	t.log.Info("subsystem added", "nqn", cfg.NQN, "size", cfg.Device.Size(), "block_size", cfg.Device.BlockSize())
	return nil
}

// RemoveSubsystem stops exporting nqn and disconnects its controllers. The
// device is not closed.
func (t *Target) RemoveSubsystem(nqn string) error {
	t.mu.Lock()
	s, ok := t.subs[nqn]
	if ok {
		delete(t.subs, nqn)
		t.genctr++
	}
	t.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, nqn)
	}
	s.destroyAll("subsystem removed")
	t.disc.postAEN(nvme.AECDiscLog, nvme.AENResult(nvme.AENTypeNotice, nvme.AENNoticeDiscLog, nvme.LogDiscovery))
	return nil
}

// Subsystems lists the exported subsystems, sorted by NQN.
func (t *Target) Subsystems() []SubsystemInfo {
	t.mu.Lock()
	subs := make([]*subsystem, 0, len(t.subs))
	for _, s := range t.subs {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	out := make([]SubsystemInfo, 0, len(subs))
	for _, s := range subs {
		out = append(out, s.info())
	}
	slices.SortFunc(out, func(a, b SubsystemInfo) int {
		if a.NQN < b.NQN {
			return -1
		}
		if a.NQN > b.NQN {
			return 1
		}
		return 0
	})
	return out
}

// SetANAState sets the ANA state of the subsystem's namespace (group 1) as
// reported through this target (nvme.ANAOptimized, ANANonOptimized,
// ANAInaccessible, ANAPersistentLoss, ANAChange) and notifies connected
// hosts with an ANA change event.
func (t *Target) SetANAState(nqn string, state uint8) error {
	switch state {
	case nvme.ANAOptimized, nvme.ANANonOptimized, nvme.ANAInaccessible, nvme.ANAPersistentLoss, nvme.ANAChange:
	default:
		return fmt.Errorf("%w: ANA state %#x", ErrInvalidConfig, state)
	}
	s := t.lookup(nqn)
	if s == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, nqn)
	}
	s.setANA(state)
	return nil
}

func (t *Target) lookup(nqn string) *subsystem {
	if nqn == nvme.DiscoveryNQN {
		return t.disc
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.subs[nqn]
}
