package rebuild

import (
	"context"
	"sync"
	"time"
)

// bucket is the deterministic core of the token bucket: time is an input.
type bucket struct {
	rate   float64 // tokens (bytes) per second; <= 0 means unlimited
	burst  float64
	tokens float64
	last   time.Time
}

// take removes n tokens at time now and returns how long the caller must
// wait before the tokens are considered available (0 if none). Tokens may
// go negative: the debt is paid by the returned wait, so a large request
// is never refused, only delayed.
func (b *bucket) take(now time.Time, n int64) time.Duration {
	if b.rate <= 0 {
		return 0
	}
	if !b.last.IsZero() {
		b.tokens += now.Sub(b.last).Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
	} else {
		b.tokens = b.burst
	}
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// Limiter limits a byte rate (token bucket). A nil *Limiter or a rate of 0
// is unlimited. Safe for concurrent use; the rate can change while jobs run.
type Limiter struct {
	mu sync.Mutex // guards b
	b  bucket
}

// NewLimiter returns a limiter of rate bytes/s with a burst of burst bytes
// (0 picks rate/10, at least 64 KiB).
func NewLimiter(rate, burst int64) *Limiter {
	l := &Limiter{}
	l.SetRate(rate, burst)
	return l
}

// SetRate changes the rate (0 = unlimited).
func (l *Limiter) SetRate(rate, burst int64) {
	if burst <= 0 {
		burst = max(rate/10, 64<<10)
	}
	l.mu.Lock()
	l.b.rate, l.b.burst = float64(rate), float64(burst)
	l.mu.Unlock()
}

// Rate returns the configured rate in bytes/s (0 = unlimited).
func (l *Limiter) Rate() int64 {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(l.b.rate)
}

// Wait blocks until n bytes may be transferred or ctx is done.
func (l *Limiter) Wait(ctx context.Context, n int64) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	d := l.b.take(time.Now(), n)
	l.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
