package rebuild

import (
	"context"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := bucket{rate: 1000, burst: 500}
	steps := []struct {
		at   time.Duration
		n    int64
		wait time.Duration
	}{
		{0, 500, 0},                      // burst available at start
		{0, 100, 100 * time.Millisecond}, // in debt by 100
		{0, 400, 500 * time.Millisecond}, // debt 500 -> 0.5 s
		{time.Second, 0, 0},              // debt 500 + 1000 refilled = 500 (the burst cap)
		{time.Second, 600, 100 * time.Millisecond},
	}
	for i, s := range steps {
		if got := b.take(t0.Add(s.at), s.n); got != s.wait {
			t.Fatalf("step %d: wait %v, want %v (tokens %.0f)", i, got, s.wait, b.tokens)
		}
	}
	unl := bucket{}
	if unl.take(t0, 1<<40) != 0 {
		t.Fatal("unlimited bucket waited")
	}
}

func TestLimiterRate(t *testing.T) {
	l := NewLimiter(4<<20, 256<<10)
	start := time.Now()
	var total int64
	for total < 2<<20 {
		if err := l.Wait(context.Background(), 128<<10); err != nil {
			t.Fatal(err)
		}
		total += 128 << 10
	}
	// (2 MiB - 256 KiB burst) at 4 MiB/s = ~0.44 s.
	if d := time.Since(start); d < 380*time.Millisecond || d > 3*time.Second {
		t.Fatalf("2 MiB at 4 MiB/s took %v", d)
	}
	var nl *Limiter
	if nl.Wait(context.Background(), 1<<30) != nil || nl.Rate() != 0 {
		t.Fatal("nil limiter")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.SetRate(1, 1)
	if err := l.Wait(ctx, 1<<20); err == nil {
		t.Fatal("cancelled wait returned nil")
	}
}
