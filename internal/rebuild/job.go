package rebuild

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Source is what a rebuild reads from. If it also implements
// blockdev.Allocation, unallocated segments are not copied.
type Source interface {
	ReadAt(p []byte, off int64) (int, error)
}

// Dest is what a rebuild writes to. If it also implements
// blockdev.Allocation, segments unallocated on both sides are skipped
// without writing; otherwise they are zeroed (the destination may hold
// stale data).
type Dest interface {
	WriteAt(p []byte, off int64) (int, error)
	WriteZeroes(off, length int64) error
	Flush() error
}

// Config describes a rebuild job.
type Config struct {
	Src         Source
	Dst         Dest
	Size        int64 // bytes to consider, from offset 0
	SegmentSize int64 // copy granule; a multiple of the block size
	// Segments, when non-nil, lists the segments to copy (partial rebuild);
	// the job works on a copy. Nil copies every segment (full rebuild).
	Segments *Bitmap
	// Lock is shared with application writes; nil makes a private one.
	Lock    *RangeLock
	Limiter *Limiter // nil = unlimited
	Tasks   int      // concurrent copy tasks; default 2
}

// Progress is a snapshot of how far a job is.
type Progress struct {
	State         State
	SegmentsTotal int64
	SegmentsDone  int64
	BytesTotal    int64
	BytesDone     int64 // copied + skipped
	Percent       float64
}

// Stats are a job's counters.
type Stats struct {
	Progress
	BytesCopied     int64
	BytesSkipped    int64 // unallocated on the source: zeroed or left alone
	SegmentsCopied  int64
	SegmentsSkipped int64
	Start           time.Time
	End             time.Time // zero while running
	Duration        time.Duration
	RateBps         float64 // bytes done per second of running time
	Err             string
}

// Job is one running rebuild. Start it with Start; it runs its copy tasks
// in goroutines it owns until it completes, fails or is stopped. Wait
// returns the outcome.
type Job struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup // copy tasks
	done   chan struct{}  // closed when final

	mu    sync.Mutex // guards everything below
	cond  sync.Cond  // signalled on state changes (pause/resume/stop)
	state State
	plan  plan
	st    Stats
	err   error
}

// Start validates cfg and starts the copy tasks.
func Start(cfg Config) (*Job, error) {
	if cfg.SegmentSize <= 0 || cfg.Size <= 0 || cfg.Src == nil || cfg.Dst == nil {
		return nil, fmt.Errorf("%w: bad rebuild config", ErrBadState)
	}
	nseg := (cfg.Size + cfg.SegmentSize - 1) / cfg.SegmentSize
	var pending *Bitmap
	if cfg.Segments != nil {
		if cfg.Segments.Len() != nseg {
			return nil, fmt.Errorf("%w: %d segments given, device has %d", ErrLogMismatch, cfg.Segments.Len(), nseg)
		}
		pending = cfg.Segments.Clone()
	} else {
		pending = NewBitmap(nseg)
		pending.SetAll()
	}
	if cfg.Lock == nil {
		cfg.Lock = NewRangeLock()
	}
	if cfg.Tasks <= 0 {
		cfg.Tasks = 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &Job{cfg: cfg, cancel: cancel, done: make(chan struct{}), plan: plan{pending: pending}}
	j.cond.L = &j.mu
	j.st.Start = time.Now()
	j.st.SegmentsTotal = pending.Count()
	for i := pending.Next(0); i >= 0; i = pending.Next(i + 1) {
		j.st.BytesTotal += j.segLen(i)
	}
	j.wg.Add(cfg.Tasks)
	for range cfg.Tasks {
		go j.task(ctx)
	}
	go j.finisher()
	return j, nil
}

func (j *Job) segLen(i int64) int64 {
	return min(j.cfg.SegmentSize, j.cfg.Size-i*j.cfg.SegmentSize)
}

// Pending reports whether every segment in [lo, hi] still waits to be
// copied. A caller holding [lo, hi] shared in the job's RangeLock sees a
// stable answer: such writes need not reach the destination because the
// copy will carry them.
func (j *Job) Pending(lo, hi int64) bool { return j.plan.pending.AllSet(lo, hi) }

// Done is closed when the job reached a final state.
func (j *Job) Done() <-chan struct{} { return j.done }

// Wait blocks until the job is final or ctx is done, and returns nil for a
// completed job, an error wrapping ErrStopped for a stopped one, or the
// failure.
func (j *Job) Wait(ctx context.Context) error {
	select {
	case <-j.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Pause stops handing out segments; copies in progress finish.
func (j *Job) Pause() error { return j.apply(evPause) }

// Resume continues a paused job.
func (j *Job) Resume() error { return j.apply(evResume) }

// Stop ends the job; Wait then returns ErrStopped.
func (j *Job) Stop() error { return j.apply(evStop) }

func (j *Job) apply(ev event) error {
	j.mu.Lock()
	s, err := step(j.state, ev)
	if err == nil {
		j.state = s
		if s == Stopped && j.err == nil {
			j.err = ErrStopped
		}
	}
	j.mu.Unlock()
	j.cond.Broadcast()
	if err == nil && ev == evStop {
		j.cancel()
	}
	return err
}

// Progress returns a snapshot of the job's progress.
func (j *Job) Progress() Progress { return j.Stats().Progress }

// Stats returns a snapshot of the job's counters.
func (j *Job) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.st
	s.State = j.state
	end := s.End
	if end.IsZero() {
		end = time.Now()
	}
	s.Duration = end.Sub(s.Start)
	if s.Duration > 0 {
		s.RateBps = float64(s.BytesDone) / s.Duration.Seconds()
	}
	if s.BytesTotal > 0 {
		s.Percent = 100 * float64(s.BytesDone) / float64(s.BytesTotal)
	} else {
		s.Percent = 100
	}
	if j.err != nil {
		s.Err = j.err.Error()
	}
	return s
}
