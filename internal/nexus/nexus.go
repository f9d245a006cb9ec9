package nexus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/rebuild"
)

// State is the nexus state.
type State int

// Nexus states.
const (
	Online   State = iota // every child healthy
	Degraded              // at least one healthy child, not all
	Faulted               // no healthy child: I/O fails
	Shutdown              // shut down or destroyed
)

func (s State) String() string {
	switch s {
	case Online:
		return "online"
	case Degraded:
		return "degraded"
	case Faulted:
		return "faulted"
	case Shutdown:
		return "shutdown"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Nexus is a mirrored block device over N children. It implements
// blockdev.Device and blockdev.Allocation. All methods are safe for
// concurrent use.
type Nexus struct {
	cfg       Config
	size      int64
	blockSize int
	nseg      int64
	log       *slog.Logger

	snap    atomic.Pointer[snapshot] // I/O path reads only this
	gate    *gate
	rlock   *rebuild.RangeLock // shared with rebuild jobs
	limiter *rebuild.Limiter
	history *rebuild.History
	bg      sync.WaitGroup // instance closers and rebuild watchers
	inline  bool           // run one child I/O inline (!cfg.IsolateChildIO)
	wdStop  chan struct{}  // closed to stop the watchdog
	wdDone  sync.WaitGroup // the watchdog

	mu       sync.Mutex // control path: guards children, shutdown, broken; never held by the I/O fast path
	children []*child
	shutdown bool  // Shutdown finished its work
	stopping bool  // Shutdown started
	broken   error // set when NexusInfo could not be persisted: I/O fails

	isBroken atomic.Bool // broken != nil, for the I/O path
}

// New opens the children and returns a nexus. NexusInfo from cfg.Store
// decides which children are trusted: after an unclean shutdown only one
// recorded-healthy child is served and the others wait for a rebuild;
// children recorded unhealthy (or with a leftover dirty log) start
// Faulted. Faulted children are not rebuilt automatically: call
// OnlineChild.
func New(ctx context.Context, cfg Config) (*Nexus, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	info, err := cfg.Store.Load(ctx, cfg.UUID)
	first := errors.Is(err, ErrNoInfo)
	if err != nil && !first {
		return nil, err
	}
	n := &Nexus{cfg: cfg, log: cfg.Logger.With("nexus", cfg.Name), gate: newGate(),
		rlock: rebuild.NewRangeLock(), limiter: rebuild.NewLimiter(cfg.RebuildRate, 0),
		history: rebuild.NewHistory(0), inline: !cfg.IsolateChildIO, wdStop: make(chan struct{})}
	recorded := map[string]ChildInfo{}
	for _, ci := range info.Children {
		recorded[ci.URI] = ci
	}
	devs := make([]blockdev.Device, len(cfg.Children))
	openErr := make([]error, len(cfg.Children))
	for i, uri := range cfg.Children {
		devs[i], openErr[i] = cfg.Opener(ctx, uri)
	}
	closeAll := func() {
		for _, d := range devs {
			if d != nil {
				d.Close()
			}
		}
	}
	if err := n.geometry(devs); err != nil {
		closeAll()
		return nil, err
	}
	keptOne := false // unclean shutdown: only one recorded-healthy child is served
	for i, uri := range cfg.Children {
		c := &child{uri: uri, since: time.Now()}
		n.children = append(n.children, c)
		lp := logPath(cfg.LogDir, cfg.UUID, uri)
		hasLog := lp != "" && fileExists(lp)
		trusted := first
		if ci, ok := recorded[uri]; ok && ci.Healthy {
			trusted = info.CleanShutdown || !keptOne
		}
		switch {
		case openErr[i] != nil:
			c.state, c.reason = ChildFaulted, "cannot open: "+openErr[i].Error()
		case hasLog:
			c.state, c.reason = ChildFaulted, "has dirty log from a previous run"
		case !trusted && !first && !recorded[uri].Healthy:
			c.state, c.reason = ChildFaulted, "recorded unhealthy in nexus info"
		case !trusted:
			c.state, c.reason = ChildFaulted, "unclean shutdown: needs resync"
		default:
			c.state = ChildOpen
			if !info.CleanShutdown {
				keptOne = true
			}
		}
		if c.state == ChildOpen {
			c.inst = newInstance(c, devs[i], cfg.QueueDepth)
			continue
		}
		if devs[i] != nil {
			devs[i].Close()
		}
		// Keep the writes this child misses from now on, if its data was
		// good (recorded healthy, or it already has a log).
		if hasLog || (openErr[i] != nil && (first || recorded[uri].Healthy)) {
			if err := n.startLogLocked(c); err != nil {
				n.log.Warn("no dirty log: next rebuild is full", "child", uri, "err", err)
			}
		}
	}
	n.publishLocked()
	if err := n.persistLocked(ctx, false); err != nil {
		n.closeInstances()
		return nil, err
	}
	n.wdDone.Add(1)
	go n.watchdog(n.wdStop)
	n.log.Info("nexus created", "size", n.size, "block_size", n.blockSize, "state", n.State())
	return n, nil
}

// geometry decides size and block size from cfg and the opened children.
func (n *Nexus) geometry(devs []blockdev.Device) error {
	bs, size := n.cfg.BlockSize, n.cfg.Size
	var minSize int64 = -1
	for i, d := range devs {
		if d == nil {
			continue
		}
		if bs == 0 {
			bs = d.BlockSize()
		}
		if d.BlockSize() != bs {
			return fmt.Errorf("%w: child %s has block size %d, nexus %d", ErrConfig, n.cfg.Children[i], d.BlockSize(), bs)
		}
		if minSize < 0 || d.Size() < minSize {
			minSize = d.Size()
		}
	}
	if minSize < 0 {
		return fmt.Errorf("%w: no child could be opened", ErrNoHealthy)
	}
	if size == 0 {
		size = minSize
	}
	if size > minSize {
		return fmt.Errorf("%w: size %d exceeds the smallest child (%d)", ErrConfig, size, minSize)
	}
	size -= size % int64(bs)
	if size <= 0 {
		return fmt.Errorf("%w: size %d", ErrConfig, size)
	}
	n.size, n.blockSize = size, bs
	n.nseg = (size + n.cfg.SegmentSize - 1) / n.cfg.SegmentSize
	return nil
}

// checkChild validates a device added later.
func (n *Nexus) checkChild(uri string, d blockdev.Device) error {
	if d.BlockSize() != n.blockSize {
		return fmt.Errorf("%w: child %s has block size %d, nexus %d", ErrConfig, uri, d.BlockSize(), n.blockSize)
	}
	if d.Size() < n.size {
		return fmt.Errorf("%w: child %s is %d bytes, nexus needs %d", ErrConfig, uri, d.Size(), n.size)
	}
	return nil
}

// Name returns the nexus name.
func (n *Nexus) Name() string { return n.cfg.Name }

// UUID returns the nexus UUID.
func (n *Nexus) UUID() string { return n.cfg.UUID }

// Size is the nexus size in bytes.
func (n *Nexus) Size() int64 { return n.size }

// BlockSize is the nexus block size.
func (n *Nexus) BlockSize() int { return n.blockSize }

// publishLocked builds and installs a new I/O snapshot from the children.
func (n *Nexus) publishLocked() {
	s := &snapshot{}
	for _, c := range n.children {
		switch c.state {
		case ChildOpen:
			s.healthy = append(s.healthy, c.inst)
		case ChildRebuilding:
			s.rebuilding = append(s.rebuilding, target{inst: c.inst, job: c.job})
		case ChildFaulted, ChildOffline:
			if c.log != nil {
				s.logs = append(s.logs, c.log)
			}
		}
	}
	n.snap.Store(s)
}

// infoLocked is the NexusInfo of the current children.
func (n *Nexus) infoLocked(clean bool) Info {
	in := Info{CleanShutdown: clean}
	for _, c := range n.children {
		if c.state != ChildClosed {
			in.Children = append(in.Children, ChildInfo{URI: c.uri, Healthy: c.state == ChildOpen})
		}
	}
	return in
}

// persistLocked stores NexusInfo. A failure breaks the nexus: without a
// durable record of which children are stale, acknowledging I/O could
// later serve stale data, so I/O fails instead (consistency over
// availability).
func (n *Nexus) persistLocked(ctx context.Context, clean bool) error {
	if err := n.cfg.Store.Store(ctx, n.cfg.UUID, n.infoLocked(clean)); err != nil {
		if n.broken == nil {
			n.broken = fmt.Errorf("nexus %s: persisting nexus info failed: %v: %w", n.cfg.Name, err, blockdev.ErrIO)
			n.isBroken.Store(true)
			n.log.Error("nexus info not persisted: failing I/O", "err", err)
		}
		return n.broken
	}
	return nil
}

// startLogLocked opens (or reopens) the dirty log of c.
func (n *Nexus) startLogLocked(c *child) error {
	if c.log != nil {
		return nil
	}
	p := logPath(n.cfg.LogDir, n.cfg.UUID, c.uri)
	l, _, err := rebuild.OpenLog(p, n.cfg.SegmentSize, n.nseg)
	if errors.Is(err, rebuild.ErrLogCorrupt) || errors.Is(err, rebuild.ErrLogMismatch) {
		// What the child missed is unknown: drop the log so the child gets
		// a full rebuild (a fresh, empty log would under-copy) and so the
		// bad file does not fault the child again on every restart.
		if rerr := os.Remove(p); rerr != nil {
			n.log.Warn("removing unusable dirty log", "path", p, "err", rerr)
		}
		return err
	}
	if err != nil {
		return err
	}
	c.log = l
	return nil
}

// State returns the nexus state.
func (n *Nexus) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stateLocked()
}

func (n *Nexus) stateLocked() State {
	if n.shutdown {
		return Shutdown
	}
	healthy, total := 0, 0
	for _, c := range n.children {
		total++
		if c.state == ChildOpen {
			healthy++
		}
	}
	switch {
	case healthy == 0 || n.broken != nil:
		return Faulted
	case healthy == total:
		return Online
	}
	return Degraded
}

// Children returns the status of every child, in order.
func (n *Nexus) Children() []ChildStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]ChildStatus, 0, len(n.children))
	for _, c := range n.children {
		out = append(out, c.status())
	}
	return out
}

// Status is a snapshot of the nexus for listings.
type Status struct {
	Name      string
	UUID      string
	Size      int64
	BlockSize int
	State     State
	Children  []ChildStatus
	Rebuilds  int // running rebuild jobs
}

// Status returns a snapshot of the nexus.
func (n *Nexus) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := Status{Name: n.cfg.Name, UUID: n.cfg.UUID, Size: n.size, BlockSize: n.blockSize, State: n.stateLocked()}
	for _, c := range n.children {
		s.Children = append(s.Children, c.status())
		if c.job != nil {
			s.Rebuilds++
		}
	}
	return s
}

func (n *Nexus) findLocked(uri string) (*child, int) {
	for i, c := range n.children {
		if c.uri == uri {
			return c, i
		}
	}
	return nil, -1
}

func (n *Nexus) healthyCountLocked() int {
	k := 0
	for _, c := range n.children {
		if c.state == ChildOpen {
			k++
		}
	}
	return k
}
