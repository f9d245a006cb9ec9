package blockdevtest

import (
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// SlowWrites wraps a device so every WriteAt takes at least Delay, and
// records the most writes that were ever in progress at once: servers'
// tests use it to check that pipelined requests overlap on a slow device.
type SlowWrites struct {
	blockdev.Device
	Delay    time.Duration
	cur, max atomic.Int32
}

// WriteAt sleeps Delay while counted as in progress, then writes.
func (s *SlowWrites) WriteAt(p []byte, off int64) (int, error) {
	n := s.cur.Add(1)
	for m := s.max.Load(); n > m && !s.max.CompareAndSwap(m, n); m = s.max.Load() {
	}
	time.Sleep(s.Delay)
	s.cur.Add(-1)
	return s.Device.WriteAt(p, off)
}

// MaxOverlap returns the most writes that were in progress at once.
func (s *SlowWrites) MaxOverlap() int { return int(s.max.Load()) }
