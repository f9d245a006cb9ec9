package nvmetcp

import (
	"errors"
	"fmt"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// errIOTimeout: an I/O command stayed outstanding longer than
// Config.IOTimeout, and its connection was reset.
var errIOTimeout = errors.New("nvmetcp: I/O command timed out")

// ioTimeoutSteps is how many sweeps an I/O timeout spans: a command times
// out between IOTimeout and IOTimeout plus one sweep period after it was
// sent. Sweeping costs a scan of each queue's slots per period (30 s / 8
// by default), and nothing on the I/O path but one atomic load and store.
const ioTimeoutSteps = 8

// ioTimeoutClock returns the sweep period for timeout and the number of
// sweeps after which a command has timed out; period 0 when disabled.
func ioTimeoutClock(timeout time.Duration) (period time.Duration, steps uint32) {
	if timeout <= 0 {
		return 0, 0
	}
	period = min(max(timeout/ioTimeoutSteps, 5*time.Millisecond), time.Second)
	return period, uint32((timeout + period - 1) / period)
}

// expire advances the queue's clock by one sweep and, when a command has
// been in flight for more than steps sweeps, fails the queue with
// errIOTimeout (its read loop then fails every command in flight and the
// device reconnects). It reports whether it did.
func (q *hqueue) expire(steps uint32, timeout time.Duration) bool {
	now := q.clock.Add(1)
	for i := range q.reqs {
		r := &q.reqs[i]
		if !r.inflight.Load() {
			continue
		}
		if age := now - r.sent.Load(); age > steps && age < 1<<31 {
			if q.dead.Load() {
				return false
			}
			q.fail(fmt.Errorf("%w: a command on queue %d was outstanding for more than %v", errIOTimeout, q.qid, timeout))
			return true
		}
	}
	return false
}

// lostErr classifies the error of a command whose connection failed under
// it: blockdev.ErrTimeout when an I/O timeout reset the connection, else
// blockdev.ErrIO.
func lostErr(err error) error {
	if errors.Is(err, errIOTimeout) {
		return fmt.Errorf("%w: %w", blockdev.ErrTimeout, err)
	}
	return fmt.Errorf("%w: %w", blockdev.ErrIO, err)
}
