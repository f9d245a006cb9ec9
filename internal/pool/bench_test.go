package pool

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/kura-io/kura/internal/blockdev"
)

// Benchmarks. Method and results: docs/pool-bench.md. Run alternating
// rounds, e.g.
//
//	for i in 1 2 3; do go test -run XXX -bench 'RandIO' -benchtime 3s ./internal/pool; done
const (
	benchSpan = 256 << 20 // bytes touched by random I/O
	benchQD   = 32        // concurrent goroutines
)

func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & 4095)
	return b[off : off+n]
}

// randIO runs 4 KiB random reads or writes from benchQD goroutines.
func randIO(b *testing.B, d blockdev.Device, span int64, write bool) {
	b.Helper()
	blocks := span / 4096
	var seed atomic.Uint64
	b.SetParallelism((benchQD + 1) / 2) // GOMAXPROCS is 2 on the bench host
	b.SetBytes(4096)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seed.Add(1), 9))
		buf := alignedBuf(4096)
		buf[0] = 1
		for pb.Next() {
			off := r.Int64N(blocks) * 4096
			var err error
			if write {
				_, err = d.WriteAt(buf, off)
			} else {
				_, err = d.ReadAt(buf, off)
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "IOPS")
}

// fill writes span bytes sequentially in 1 MiB chunks.
func fill(b *testing.B, d blockdev.Device, span int64) {
	buf := alignedBuf(1 << 20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for off := int64(0); off < span; off += 1 << 20 {
		if _, err := d.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := d.Flush(); err != nil {
		b.Fatal(err)
	}
}

// benchTarget opens the device a RandIO benchmark runs on.
// benchFileDev opens a sparse file the way the engine opens a bare path
// (io_uring when it works, else aio; KURA_BENCH_SCHEME=aio|uring
// overrides), so raw and pool targets use the same device type.
func benchFileDev(b *testing.B, size int64) blockdev.Device {
	scheme := os.Getenv("KURA_BENCH_SCHEME")
	if scheme == "" {
		scheme = blockdev.BareScheme()
	}
	if scheme != "uring" {
		d, _ := fileDev(b, size, true)
		return d
	}
	return uringDev(b, size)
}

func benchTarget(b *testing.B, backend, kind string) blockdev.Device {
	b.Helper()
	var dev blockdev.Device
	switch backend {
	case "file":
		size := int64(benchSpan)
		if kind != "raw" && kind != "rawz" {
			size = benchSpan + 64<<20
		}
		dev = benchFileDev(b, size)
	case "malloc":
		m, err := blockdev.NewMalloc("bench", benchSpan+64<<20, 4096)
		if err != nil {
			b.Fatal(err)
		}
		dev = m
	}
	switch kind {
	case "rawz": // prepared like pool clusters: zeroed (fallocate ZERO_RANGE), then written
		if err := dev.WriteZeroes(0, benchSpan); err != nil {
			b.Fatal(err)
		}
		fallthrough
	case "raw":
		fill(b, dev, benchSpan)
		return dev
	}
	p, err := Create(ctx, dev, "bench", CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	r, err := p.CreateReplica(ctx, "r", ReplicaOptions{Size: benchSpan, Thin: kind == "thin"})
	if err != nil {
		b.Fatal(err)
	}
	fill(b, r, benchSpan) // thin: every cluster allocated (steady state)
	return r
}

// BenchmarkRandIO: 4 KiB random I/O, 32 goroutines, on the raw backing
// device vs a thick and a (fully allocated) thin replica on a pool on the
// same kind of device.
func BenchmarkRandIO(b *testing.B) {
	for _, backend := range []string{"file", "malloc"} {
		for _, op := range []string{"read", "write"} {
			for _, kind := range []string{"raw", "thick", "thin"} {
				b.Run(fmt.Sprintf("%s/%s/%s", backend, op, kind), func(b *testing.B) {
					d := benchTarget(b, backend, kind)
					randIO(b, d, benchSpan, op == "write")
				})
			}
		}
	}
}

// BenchmarkSnapshotCreate measures CreateSnapshot of a thin replica of
// 1 GiB and 1 TiB on a sparse file (O_DIRECT), each with 64 MiB written.
func BenchmarkSnapshotCreate(b *testing.B) {
	for _, sz := range []struct {
		name string
		size int64
	}{{"1GiB", 1 << 30}, {"1TiB", 1 << 40}} {
		b.Run(sz.name, func(b *testing.B) {
			dev, _ := fileDev(b, sz.size+256<<20, true)
			p, err := Create(ctx, dev, "snap", CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			r, err := p.CreateReplica(ctx, "r", ReplicaOptions{Size: sz.size, Thin: true})
			if err != nil {
				b.Fatal(err)
			}
			fill(b, r, 64<<20)
			var times []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := p.CreateSnapshot(ctx, "r", fmt.Sprint("s", i), ""); err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(t0))
				b.StopTimer()
				if err := p.DestroySnapshot(ctx, fmt.Sprint("s", i), false); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			slices.Sort(times)
			ms := func(q float64) float64 { return float64(times[int(q*float64(len(times)-1))].Microseconds()) / 1000 }
			b.ReportMetric(ms(0.5), "p50-ms")
			b.ReportMetric(ms(0.9), "p90-ms")
			b.ReportMetric(ms(1), "max-ms")
		})
	}
}

// BenchmarkCloneRead: 4 KiB random reads, 32 goroutines, from a clone
// whose data lives in a snapshot 1 or 64 levels up, vs the plain replica.
func BenchmarkCloneRead(b *testing.B) {
	const span = 64 << 20
	for _, backend := range []string{"file", "malloc"} {
		for _, depth := range []int{0, 1, 64} {
			b.Run(fmt.Sprintf("%s/depth%d", backend, depth), func(b *testing.B) {
				var dev blockdev.Device
				if backend == "file" {
					dev, _ = fileDev(b, span+64<<20, true)
				} else {
					dev, _ = blockdev.NewMalloc("bench", span+64<<20, 4096)
				}
				p, err := Create(ctx, dev, "clone", CreateOptions{})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				r, err := p.CreateReplica(ctx, "r0", ReplicaOptions{Size: span, Thin: true})
				if err != nil {
					b.Fatal(err)
				}
				fill(b, r, span)
				cur := r
				for i := 0; i < depth; i++ {
					sn := fmt.Sprint("s", i)
					if _, err := p.CreateSnapshot(ctx, cur.Name(), sn, ""); err != nil {
						b.Fatal(err)
					}
					if cur, err = p.CloneSnapshot(ctx, sn, fmt.Sprint("c", i), ""); err != nil {
						b.Fatal(err)
					}
				}
				randIO(b, cur, span, false)
			})
		}
	}
}
