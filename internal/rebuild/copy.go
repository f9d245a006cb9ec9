package rebuild

import (
	"context"
	"fmt"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// next blocks while paused and returns the next segment, or -1 when the
// task should exit.
func (j *Job) next() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.state == Paused {
		j.cond.Wait()
	}
	if j.state != Running {
		return -1
	}
	return j.plan.next()
}

// awaitRunning blocks while the job is paused (a pause during the rate
// limiter's wait holds the segment until resume) and reports whether the
// job is still running.
func (j *Job) awaitRunning() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.state == Paused {
		j.cond.Wait()
	}
	return j.state == Running
}

func (j *Job) task(ctx context.Context) {
	defer j.wg.Done()
	buf := make([]byte, j.cfg.SegmentSize)
	for {
		i := j.next()
		if i < 0 {
			return
		}
		n := j.segLen(i)
		if err := j.cfg.Limiter.Wait(ctx, n); err != nil || !j.awaitRunning() {
			j.finish(i, n, false, ErrStopped)
			return
		}
		h := j.cfg.Lock.LockExclusive(i, i)
		copied, err := j.copySegment(buf[:n], i*j.cfg.SegmentSize)
		if err == nil {
			j.plan.pending.Clear(i)
		}
		j.cfg.Lock.Unlock(h)
		j.finish(i, n, copied, err)
		if err != nil {
			return
		}
	}
}

// copySegment copies one segment and reports whether data was copied
// (false: skipped as unallocated).
func (j *Job) copySegment(buf []byte, off int64) (bool, error) {
	n := int64(len(buf))
	if a, ok := j.cfg.Src.(blockdev.Allocation); ok {
		alloc, err := a.Allocated(off, n)
		if err != nil {
			return false, fmt.Errorf("rebuild: source allocation at %d: %w", off, err)
		}
		if !alloc {
			if d, ok := j.cfg.Dst.(blockdev.Allocation); ok {
				if da, err := d.Allocated(off, n); err == nil && !da {
					return false, nil
				}
			}
			if err := j.cfg.Dst.WriteZeroes(off, n); err != nil {
				return false, fmt.Errorf("rebuild: zero destination at %d: %w", off, err)
			}
			return false, nil
		}
	}
	if _, err := j.cfg.Src.ReadAt(buf, off); err != nil {
		return false, fmt.Errorf("rebuild: read source at %d: %w", off, err)
	}
	if _, err := j.cfg.Dst.WriteAt(buf, off); err != nil {
		return false, fmt.Errorf("rebuild: write destination at %d: %w", off, err)
	}
	return true, nil
}

func (j *Job) finish(i, n int64, copied bool, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.plan.finish()
	if err != nil {
		if !j.state.Final() {
			j.state, _ = step(j.state, evFail)
			j.err = err
			j.cancel()
			j.cond.Broadcast()
		}
		return
	}
	j.st.SegmentsDone++
	j.st.BytesDone += n
	if copied {
		j.st.SegmentsCopied++
		j.st.BytesCopied += n
	} else {
		j.st.SegmentsSkipped++
		j.st.BytesSkipped += n
	}
}

// finisher waits for the tasks, flushes the destination and makes the
// job final.
func (j *Job) finisher() {
	j.wg.Wait()
	j.mu.Lock()
	ok := j.state == Running && j.plan.complete()
	j.mu.Unlock()
	var ferr error
	if ok {
		if err := j.cfg.Dst.Flush(); err != nil {
			ferr = fmt.Errorf("rebuild: flush destination: %w", err)
		}
	}
	j.mu.Lock()
	switch {
	case ok && ferr == nil:
		j.state, _ = step(j.state, evDone)
	case ok:
		j.state, _ = step(j.state, evFail)
		j.err = ferr
	case !j.state.Final():
		// Tasks exited without finishing: cancelled while paused/running.
		j.state, _ = step(j.state, evStop)
		if j.err == nil {
			j.err = ErrStopped
		}
	}
	j.st.End = time.Now()
	j.mu.Unlock()
	j.cancel()
	close(j.done)
}
