package nexus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/rebuild"
)

// New opens the children and returns a nexus. NexusInfo from cfg.Store
// decides which children are trusted: after an unclean shutdown only one
// recorded-healthy child is served and the others wait for a rebuild;
// children recorded unhealthy (or with a leftover dirty log) start
// Faulted; children recorded out of sync (added without rebuild, never
// rebuilt) start OutOfSync. Neither is rebuilt automatically: call
// OnlineChild or StartRebuild.
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
	unclean := !first && !info.CleanShutdown
	// Write intent of the previous run: the segments that may differ
	// between recorded-healthy children after an unclean shutdown.
	var union *rebuild.Bitmap
	var intentFiles []string
	var intentSeq uint64
	if cfg.WriteIntent {
		var ierr error
		union, intentFiles, intentSeq, ierr = loadIntent(cfg.LogDir, cfg.UUID, cfg.SegmentSize, n.nseg)
		if ierr != nil {
			n.log.Warn("write intent log unusable: untrusted children need a full rebuild", "err", ierr)
		}
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
		outOfSync := !first && recorded[uri].OutOfSync
		switch {
		case outOfSync:
			// Added without rebuild and never rebuilt: it stays so, whatever
			// else is true of it, until StartRebuild.
			c.state, c.reason = ChildOutOfSync, ReasonNotRebuilt
			if openErr[i] != nil {
				c.reason += "; cannot open: " + openErr[i].Error()
			}
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
		if outOfSync {
			// Its rebuild must be full: a stray dirty log would make it
			// partial.
			if hasLog {
				if err := os.Remove(lp); err != nil {
					n.log.Warn("removing dirty log of an out-of-sync child", "path", lp, "err", err)
				}
			}
			continue
		}
		healthyBefore := first || recorded[uri].Healthy
		switch {
		case hasLog:
			// Its log has recorded every write it may have missed.
			if err := n.startLogLocked(c); err != nil {
				n.log.Warn("no dirty log: next rebuild is full", "child", uri, "err", err)
			}
		case healthyBefore && !unclean:
			// Good data (it just cannot be opened): log from now on.
			if err := n.startLogLocked(c); err != nil {
				n.log.Warn("no dirty log: next rebuild is full", "child", uri, "err", err)
			}
		case healthyBefore && union != nil:
			// Unclean shutdown: it may differ from the served child only
			// where writes were in flight.
			if err := n.resyncLogLocked(c, union); err != nil {
				n.log.Warn("no resync log: next rebuild is full", "child", uri, "err", err)
			} else if c.reason == "unclean shutdown: needs resync" {
				c.reason = fmt.Sprintf("unclean shutdown: resync of %d segments", union.Count())
			}
		}
	}
	n.publishLocked()
	if err := n.persistLocked(ctx, false); err != nil {
		n.closeInstances()
		return nil, err
	}
	if cfg.WriteIntent {
		// The previous run's intent is now held by the children's logs.
		removeFiles(intentFiles)
		it, err := newIntent(cfg.LogDir, cfg.UUID, cfg.SegmentSize, n.nseg, intentSeq)
		if err != nil {
			n.closeInstances()
			return nil, fmt.Errorf("nexus %s: write intent log: %w", cfg.Name, err)
		}
		n.intent = it
		n.wdDone.Add(1)
		go n.intentLoop(n.wdStop, cfg.IntentInterval)
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
