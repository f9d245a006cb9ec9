package nexus

import (
	"context"
	"errors"
	"fmt"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/rebuild"
)

// source reads for a rebuild from the healthy children, with the same
// least-busy choice and failover as client reads (bypassing the pause
// gate: a rebuild keeps copying while client I/O is paused).
type source struct{ n *Nexus }

func (s source) ReadAt(p []byte, off int64) (int, error) { return s.n.readHealthy(p, off) }
func (s source) Allocated(off, length int64) (bool, error) {
	return s.n.Allocated(off, length)
}

// dest writes for a rebuild to the destination instance, with the child
// timeout.
type dest struct {
	n  *Nexus
	in *instance
}

func (d dest) WriteAt(p []byte, off int64) (int, error) {
	if err := d.n.one(d.in, opWrite, p, off, int64(len(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
func (d dest) WriteZeroes(off, length int64) error { return d.n.one(d.in, opZero, nil, off, length) }
func (d dest) Flush() error                        { return d.n.one(d.in, opFlush, nil, 0, 0) }
func (d dest) Allocated(off, length int64) (bool, error) {
	if a, ok := d.in.dev.(blockdev.Allocation); ok {
		return a.Allocated(off, length)
	}
	return true, nil
}

// one runs a single I/O on one instance with the child timeout.
func (n *Nexus) one(in *instance, kind opKind, p []byte, off, length int64) error {
	r := getRequest(kind, off, length)
	r.add(in, p)
	abandoned := r.run(n.cfg.ChildTimeout, false)
	err := r.subs[0].result()
	if !abandoned {
		putRequest(r)
	}
	return err
}

// startRebuildLocked starts the rebuild job of c (Rebuilding, with an
// open instance). The caller has paused I/O.
func (n *Nexus) startRebuildLocked(c *child) error {
	var srcURI string
	for _, o := range n.children {
		if o.state == ChildOpen {
			srcURI = o.uri
			break
		}
	}
	if srcURI == "" {
		return fmt.Errorf("%w: no rebuild source", ErrNoHealthy)
	}
	cfg := rebuild.Config{Src: source{n}, Dst: dest{n, c.inst}, Size: n.size, SegmentSize: n.cfg.SegmentSize,
		Lock: n.rlock, Limiter: n.limiter, Tasks: n.cfg.RebuildTasks}
	kind := rebuild.Full
	if c.log != nil {
		cfg.Segments = c.log.Bitmap()
		kind = rebuild.Partial
	}
	n.jobs.Add(1) // before any copy task runs; I/O is paused here
	job, err := rebuild.Start(cfg)
	if err != nil {
		n.jobs.Add(-1)
		return err
	}
	c.job, c.jobKind, c.jobSource = job, kind, srcURI
	n.log.Info("rebuild started", "child", c.uri, "kind", kind, "source", srcURI, "bytes", job.Progress().BytesTotal)
	n.bg.Go(func() { n.rebuildFinished(c, job, kind, srcURI) })
	return nil
}

// rebuildFinished records a finished job and moves its child on.
func (n *Nexus) rebuildFinished(c *child, job *rebuild.Job, kind rebuild.Kind, src string) {
	err := job.Wait(context.Background()) // every copy task has exited
	n.jobs.Add(-1)
	st := job.Stats()
	n.history.Add(rebuild.Record{Child: c.uri, Source: src, Kind: kind, State: st.State,
		Start: st.Start, End: st.End, Stats: st, Err: st.Err})
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.job != job {
		return // cancelled by a child state change
	}
	c.job = nil
	ev, reason := EvRebuildDone, ""
	switch {
	case errors.Is(err, rebuild.ErrStopped):
		ev, reason = EvRebuildStopped, "rebuild stopped"
	case err != nil:
		ev, reason = EvRebuildFailed, "rebuild failed: "+err.Error()
	}
	out := Step(Input{State: c.state, Event: ev})
	if out.Err != nil {
		return
	}
	n.log.Info("rebuild finished", "child", c.uri, "kind", kind, "state", st.State,
		"copied", st.BytesCopied, "skipped", st.BytesSkipped, "duration", st.Duration)
	if err := n.applyLocked(context.Background(), c, out, reason, nil); err != nil {
		n.log.Error("after rebuild", "child", c.uri, "err", err)
	}
}

func (n *Nexus) jobLocked(uri string) (*rebuild.Job, error) {
	c, _ := n.findLocked(uri)
	if c == nil {
		return nil, fmt.Errorf("%w: %s", ErrChildNotFound, uri)
	}
	if c.job == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoRebuild, uri)
	}
	return c.job, nil
}

func (n *Nexus) withJob(uri string, f func(*rebuild.Job) error) error {
	n.mu.Lock()
	j, err := n.jobLocked(uri)
	n.mu.Unlock()
	if err != nil {
		return err
	}
	return f(j)
}

// RebuildPause pauses the rebuild onto uri.
func (n *Nexus) RebuildPause(uri string) error {
	return n.withJob(uri, (*rebuild.Job).Pause)
}

// RebuildResume resumes a paused rebuild onto uri.
func (n *Nexus) RebuildResume(uri string) error {
	return n.withJob(uri, (*rebuild.Job).Resume)
}

// RebuildStop stops the rebuild onto uri; the child becomes Faulted.
func (n *Nexus) RebuildStop(uri string) error {
	return n.withJob(uri, (*rebuild.Job).Stop)
}

// RebuildStats returns the counters of the running rebuild onto uri.
func (n *Nexus) RebuildStats(uri string) (rebuild.Stats, error) {
	var st rebuild.Stats
	err := n.withJob(uri, func(j *rebuild.Job) error { st = j.Stats(); return nil })
	return st, err
}

// RebuildHistory returns finished rebuilds, oldest first.
func (n *Nexus) RebuildHistory() []rebuild.Record { return n.history.Records() }

// SetRebuildRate changes the rebuild rate limit (bytes/s, 0 = unlimited)
// for running and future rebuilds.
func (n *Nexus) SetRebuildRate(bps int64) { n.limiter.SetRate(bps, 0) }
