package nvmetcp

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/perf"
)

func benchDevice(b *testing.B, queues int) *Device {
	tg := startTarget(b, TargetConfig{})
	nqn, _ := addMalloc(b, tg, "bench", 256<<20, 512)
	d := dial(b, tg, Config{SubNQN: nqn, IOQueues: queues})
	b.Cleanup(func() { d.Close() })
	d.WriteAt(make([]byte, 1<<20), 0)
	return d
}

func BenchmarkRead4kQD1(b *testing.B) {
	d := benchDevice(b, 1)
	p := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(4096)
	for i := 0; b.Loop(); i++ {
		if _, err := d.ReadAt(p, int64(i%256)*4096); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWrite4kQD1(b *testing.B) {
	d := benchDevice(b, 1)
	p := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(4096)
	for i := 0; b.Loop(); i++ {
		if _, err := d.WriteAt(p, int64(i%256)*4096); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWrite128kR2T(b *testing.B) {
	d := benchDevice(b, 1)
	p := make([]byte, 128<<10)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for i := 0; b.Loop(); i++ {
		if _, err := d.WriteAt(p, int64(i%64)*int64(len(p))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead4kQD32(b *testing.B) {
	d := benchDevice(b, 2)
	b.ReportAllocs()
	b.SetBytes(4096)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		p := make([]byte, 4096)
		i := 0
		for pb.Next() {
			if _, err := d.ReadAt(p, int64(i%256)*4096); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// TestPerfOverLoopback runs perf.Run through the initiator (KURA_LONG=1 or
// KURA_PERF=1 for a 3 s run per case; otherwise a smoke run).
func TestPerfOverLoopback(t *testing.T) {
	dur := 300 * time.Millisecond
	if os.Getenv("KURA_PERF") == "1" {
		dur = 3 * time.Second
	}
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "perf", 256<<20, 512)
	d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 2})
	defer d.Close()
	for _, c := range []struct {
		name string
		o    perf.Options
	}{
		{"randread-4k-qd1", perf.Options{RWMixRead: 100, QueueDepth: 1, Random: true, Prefill: true}},
		{"randread-4k-qd32", perf.Options{RWMixRead: 100, QueueDepth: 32, Random: true}},
		{"randwrite-4k-qd32", perf.Options{RWMixRead: 0, QueueDepth: 32, Random: true}},
	} {
		c.o.Duration = dur
		c.o.Range = 64 << 20
		if raceEnabled && c.o.RWMixRead < 100 {
			c.o.Random = false // disjoint per-submitter streams: no overlapping writes
		}
		r, err := perf.Run(context.Background(), d, c.o)
		if err != nil || r.Errors != 0 {
			t.Fatalf("%s: %v %v", c.name, err, r.FirstError)
		}
		t.Log(fmt.Sprintf("%-18s %s", c.name, r))
	}
}
