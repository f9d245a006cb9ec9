package nexus

import (
	"fmt"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/rebuild"
)

// maxReadTries bounds read retries on other children.
const maxReadTries = 8

// ReadAt reads from the healthy child with the fewest outstanding I/Os.
// A failed read faults that child (unless it is the last healthy one) and
// is retried on another.
func (n *Nexus) ReadAt(p []byte, off int64) (int, error) {
	if err := n.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	if err := n.gate.enter(); err != nil {
		return 0, err
	}
	defer n.gate.exit()
	if n.isBroken.Load() {
		return 0, n.noHealthy()
	}
	return n.readHealthy(p, off)
}

// readHealthy reads from the healthy children with failover.
func (n *Nexus) readHealthy(p []byte, off int64) (int, error) {
	var tried [maxReadTries]*instance
	var lastErr error
	start := n.readSeq.Add(1)
	for t := 0; t < maxReadTries; t++ {
		snap := n.snap.Load()
		in := snap.pickReader(tried[:t], start)
		if in == nil {
			break
		}
		tried[t] = in
		r := getRequest(opRead, off, int64(len(p)))
		if n.inline {
			r.add(in, p) // runs in this goroutine: never abandoned
		} else {
			r.add(in, r.readBuf(len(p))) // a timed-out worker may write it late
		}
		abandoned := r.run(n.cfg.ChildTimeout, n.inline)
		err := r.subs[0].result()
		if err == nil {
			if !n.inline {
				copy(p, r.subs[0].buf)
			}
			putRequest(r)
			return len(p), nil
		}
		if !abandoned {
			putRequest(r)
		}
		lastErr = err
		if ferr := n.childFailed(in, err, nil); ferr != nil {
			return 0, ferr
		}
	}
	if lastErr == nil {
		return 0, n.noHealthy()
	}
	return 0, fmt.Errorf("nexus %s: read at %d: %w", n.cfg.Name, off, lastErr)
}

// WriteAt writes p to every healthy child (and rebuild destinations).
func (n *Nexus) WriteAt(p []byte, off int64) (int, error) {
	if err := n.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	if err := n.fanout(opWrite, p, off, int64(len(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush flushes every child.
func (n *Nexus) Flush() error { return n.fanout(opFlush, nil, 0, 0) }

// Unmap deallocates the range on every child. Children may implement unmap
// differently (some zero, some keep old data), which would let two mirrors
// disagree, so the nexus unmaps by writing zeroes: reads of an unmapped
// range return zeros from every child.
func (n *Nexus) Unmap(off, length int64) error {
	if err := n.check(off, length); err != nil {
		return err
	}
	return n.fanout(opUnmap, nil, off, length)
}

// WriteZeroes zeroes the range on every child.
func (n *Nexus) WriteZeroes(off, length int64) error {
	if err := n.check(off, length); err != nil {
		return err
	}
	return n.fanout(opZero, nil, off, length)
}

// Allocated reports whether the range may hold data, asking one healthy
// child that implements blockdev.Allocation (true when none does).
func (n *Nexus) Allocated(off, length int64) (bool, error) {
	if err := n.check(off, length); err != nil {
		return false, err
	}
	for _, in := range n.snap.Load().healthy {
		if a, ok := in.dev.(blockdev.Allocation); ok {
			if v, err := a.Allocated(off, length); err == nil {
				return v, nil
			}
		}
	}
	return true, nil
}

func (n *Nexus) check(off, length int64) error {
	return blockdev.CheckRange(off, length, n.blockSize, n.size)
}

func (n *Nexus) noHealthy() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.shutdown {
		return ErrShutdown
	}
	if n.broken != nil {
		return n.broken
	}
	return fmt.Errorf("nexus %s: %w", n.cfg.Name, ErrNoHealthy)
}

// fanout runs a write-class I/O (or flush, when length is 0 and kind is
// opFlush) on every healthy child and every rebuild destination that
// needs it, concurrently.
func (n *Nexus) fanout(kind opKind, p []byte, off, length int64) error {
	if err := n.gate.enter(); err != nil {
		return err
	}
	defer n.gate.exit()
	snap := n.snap.Load()
	if len(snap.healthy) == 0 || n.isBroken.Load() {
		return n.noHealthy()
	}
	write := kind != opFlush
	seg := n.cfg.SegmentSize
	var lo, hi int64
	if write && length > 0 {
		lo, hi = off/seg, (off+length-1)/seg
	}
	// While a rebuild runs, hold the range shared so no segment copy
	// races this write; then ask each job whether the range is still
	// pending (the copy will carry it) or must be mirrored now.
	locked := write && (len(snap.rebuilding) > 0 || n.jobs.Load() > 0)
	var h rebuild.LockHandle
	if locked {
		h = n.rlock.LockShared(lo, hi)
		defer n.rlock.Unlock(h)
	}
	// Write intent first: the dirty logs of absent children are durable
	// before any child sees the write, so even an unacknowledged write
	// that reached a healthy child before a crash is logged.
	if write && length > 0 {
		for _, l := range snap.logs {
			if err := l.Mark(off, length); err != nil {
				return n.breakOn(err)
			}
		}
	}
	var ig *intentGen
	if n.intent != nil && write && length > 0 {
		g, err := n.intent.begin(off, length)
		if err != nil {
			return n.breakOn(err)
		}
		ig = g
	}
	r := getRequest(kind, off, length)
	nh := len(snap.healthy)
	for _, in := range snap.healthy {
		r.add(in, p)
	}
	for _, t := range snap.rebuilding {
		if !write || t.job == nil || !t.job.Pending(lo, hi) {
			r.add(t.inst, p)
		}
	}
	if p != nil && (!n.inline || len(r.subs) > 1) {
		// Worker sub-ops get a pooled copy: a timed-out child may still
		// read its buffer after we returned, when the caller owns p again.
		buf := r.readBuf(len(p))
		copy(buf, p)
		for i := range r.subs {
			r.subs[i].buf = buf
		}
	}
	abandoned := r.run(n.cfg.ChildTimeout, n.inline)
	ok, err := n.settle(r, nh, off, length, write)
	if ig != nil {
		ig.end()
	}
	if !abandoned {
		putRequest(r)
	}
	if ok {
		return nil
	}
	return err
}

// settle handles per-child results: failed children are faulted (and the
// NexusInfo persisted) before this returns. It reports whether a child
// that is still healthy took the I/O.
func (n *Nexus) settle(r *request, nh int, off, length int64, write bool) (bool, error) {
	var firstErr, refused error
	failed := false
	for i := range r.subs {
		if err := r.subs[i].result(); err != nil {
			failed = true
			if firstErr == nil {
				firstErr = err
			}
			var rng *[2]int64
			if write && length > 0 {
				rng = &[2]int64{off, length}
			}
			if ferr := n.childFailed(r.subs[i].inst, err, rng); ferr != nil && i < nh {
				refused = ferr
			}
		}
	}
	if !failed {
		return true, nil
	}
	if refused != nil {
		// The last healthy child failed: the I/O fails.
		return false, refused
	}
	for i := 0; i < nh; i++ {
		if r.subs[i].result() == nil && r.subs[i].inst.c.healthyNow(n) {
			return true, nil
		}
	}
	return false, fmt.Errorf("nexus %s: %w (first child error: %v)", n.cfg.Name, ErrNoHealthy, firstErr)
}

// breakOn turns a dirty-log failure into an I/O error.
func (n *Nexus) breakOn(err error) error {
	return fmt.Errorf("nexus %s: dirty log: %v: %w", n.cfg.Name, err, blockdev.ErrIO)
}
