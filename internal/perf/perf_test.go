package perf

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

func TestHistogramBuckets(t *testing.T) {
	for _, ns := range []uint64{0, 1, 15, 16, 17, 31, 32, 1000, 12345, 1e6, 1e9, 1 << 40} {
		b := bucket(ns)
		v := bucketValue(b)
		if v > ns || (ns >= 16 && float64(ns-v) > float64(ns)/16) {
			t.Errorf("ns %d → bucket %d value %d", ns, b, v)
		}
	}
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	if p := h.quantile(0.5); p < 470*time.Microsecond || p > 500*time.Microsecond {
		t.Fatalf("p50 %v", p)
	}
	if p := h.quantile(0.99); p < 930*time.Microsecond || p > 990*time.Microsecond {
		t.Fatalf("p99 %v", p)
	}
}

func TestRunMalloc(t *testing.T) {
	dev, _ := blockdev.NewMalloc("p", 16<<20, 512)
	for _, o := range []Options{
		{RWMixRead: 100, QueueDepth: 4, Random: true, Duration: 200 * time.Millisecond, Prefill: true},
		{RWMixRead: 0, QueueDepth: 2, Workers: 2, Duration: 200 * time.Millisecond},
		{RWMixRead: 70, BlockSize: 65536, QueueDepth: 1, Random: true, Duration: 200 * time.Millisecond},
	} {
		r, err := Run(context.Background(), dev, o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Ops == 0 || r.IOPS <= 0 || r.Errors != 0 || r.LatP50 == 0 || r.LatP99 < r.LatP50 || r.LatMax < r.LatP999 {
			t.Fatalf("%+v: %+v", o, r)
		}
		if o.RWMixRead == 100 && r.Writes != 0 || o.RWMixRead == 0 && r.Reads != 0 {
			t.Fatalf("mix wrong: %+v", r)
		}
		t.Log(r)
	}
}

func TestRunErrors(t *testing.T) {
	dev, _ := blockdev.NewMalloc("p", 1<<20, 512)
	if _, err := Run(context.Background(), dev, Options{BlockSize: 100}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("block size 100: %v", err)
	}
	if _, err := Run(context.Background(), dev, Options{RWMixRead: 101}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("rwmix 101: %v", err)
	}
	dev.Close()
	if _, err := Run(context.Background(), dev, Options{Duration: 50 * time.Millisecond}); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("closed device: %v", err)
	}
}
