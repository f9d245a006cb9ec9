package pool

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs 4 KiB random I/O from benchQD goroutines on d for dur and
// returns IOPS and process CPU nanoseconds per I/O (a load-robust cost
// measure on shared CPUs: other processes change IOPS much more than the
// CPU each I/O costs).
func measure(b *testing.B, d blockdev.Device, span int64, write bool, dur time.Duration, seed uint64) (float64, float64) {
	var ops atomic.Int64
	cpu0 := cpuTime()
	var wg sync.WaitGroup
	deadline := time.Now().Add(dur)
	start := time.Now()
	for g := range benchQD {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			buf := alignedBuf(4096)
			buf[0] = byte(g)
			n := int64(0)
			for n&63 != 0 || time.Now().Before(deadline) {
				off := r.Int64N(span/4096) * 4096
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
				n++
			}
			ops.Add(n)
		})
	}
	wg.Wait()
	n := float64(ops.Load())
	return n / time.Since(start).Seconds(), float64(cpuTime()-cpu0) / n
}

// BenchmarkPairedRandIO measures the raw backing device, a thick replica
// and a fully allocated thin replica in many short alternating slices
// (raw, thick, thin, raw, ...), so load from other processes on the
// shared CPUs hits all three alike; it reports per-target medians and
// the median of the per-round ratios. Run with -benchtime 1x.
func BenchmarkPairedRandIO(b *testing.B) {
	const rounds, slice = 15, 400 * time.Millisecond
	for _, backend := range []string{"file", "malloc"} {
		for _, op := range []string{"read", "write"} {
			b.Run(backend+"/"+op, func(b *testing.B) {
				targets := []blockdev.Device{
					benchTarget(b, backend, "raw"),
					benchTarget(b, backend, "thick"),
					benchTarget(b, backend, "thin"),
				}
				b.ResetTimer()
				var iops, cpu [3][]float64
				var thickRaw, thinThick, cpuThick, cpuThin []float64
				for round := 0; round < rounds; round++ {
					var x, c [3]float64
					for i, d := range targets {
						x[i], c[i] = measure(b, d, benchSpan, op == "write", slice, uint64(round*3+i))
						iops[i] = append(iops[i], x[i])
						cpu[i] = append(cpu[i], c[i])
					}
					thickRaw = append(thickRaw, x[1]/x[0])
					thinThick = append(thinThick, x[2]/x[1])
					cpuThick = append(cpuThick, c[1]/c[0])
					cpuThin = append(cpuThin, c[2]/c[1])
				}
				med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
				b.ReportMetric(med(iops[0]), "raw-IOPS")
				b.ReportMetric(med(iops[1]), "thick-IOPS")
				b.ReportMetric(med(iops[2]), "thin-IOPS")
				b.ReportMetric(100*med(thickRaw), "thick/raw-%")
				b.ReportMetric(100*med(thinThick), "thin/thick-%")
				b.ReportMetric(med(cpu[0]), "raw-cpu-ns/op")
				b.ReportMetric(med(cpu[1]), "thick-cpu-ns/op")
				b.ReportMetric(med(cpu[2]), "thin-cpu-ns/op")
				b.ReportMetric(100*med(cpuThick), "thick/raw-cpu-%")
				b.ReportMetric(100*med(cpuThin), "thin/thick-cpu-%")
				b.Logf("%s/%s per-round thick/raw: %s", backend, op, pct(thickRaw))
			})
		}
	}
}

func pct(v []float64) string {
	s := ""
	for _, x := range v {
		s += fmt.Sprintf(" %.0f", 100*x)
	}
	return s
}

// BenchmarkPairedRawPrep compares two raw files: one written directly,
// one first zeroed with WriteZeroes (fallocate ZERO_RANGE, as the pool
// zeroes clusters) and then written, to separate file-system effects of
// that preparation from pool overhead. Run with -benchtime 1x.
func BenchmarkPairedRawPrep(b *testing.B) {
	const rounds, slice = 15, 400 * time.Millisecond
	for _, op := range []string{"read", "write"} {
		b.Run(op, func(b *testing.B) {
			targets := []blockdev.Device{benchTarget(b, "file", "raw"), benchTarget(b, "file", "rawz")}
			var ratio []float64
			for round := 0; round < rounds; round++ {
				x0, _ := measure(b, targets[0], benchSpan, op == "write", slice, uint64(round))
				x1, _ := measure(b, targets[1], benchSpan, op == "write", slice, uint64(round))
				ratio = append(ratio, x1/x0)
			}
			slices.Sort(ratio)
			b.ReportMetric(100*ratio[len(ratio)/2], "zeroed/plain-%")
		})
	}
}

// BenchmarkPairedCloneRead compares 4 KiB random reads (32 goroutines) of
// a plain replica and of clones whose data lives 1 and 64 snapshot levels
// up, in alternating slices on one pool. Run with -benchtime 1x.
func BenchmarkPairedCloneRead(b *testing.B) {
	const span, rounds, slice = 64 << 20, 15, 400 * time.Millisecond
	for _, backend := range []string{"file", "malloc"} {
		b.Run(backend, func(b *testing.B) {
			var dev blockdev.Device
			if backend == "file" {
				dev, _ = fileDev(b, 3*span+64<<20, true)
			} else {
				dev, _ = blockdev.NewMalloc("bench", 3*span+64<<20, 4096)
			}
			p, err := Create(ctx, dev, "clone", CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			var targets []blockdev.Device
			for i, depth := range []int{0, 1, 64} {
				cur, err := p.CreateReplica(ctx, fmt.Sprint("r", i), ReplicaOptions{Size: span, Thin: true})
				if err != nil {
					b.Fatal(err)
				}
				fill(b, cur, span)
				for d := 0; d < depth; d++ {
					sn := fmt.Sprint("s", i, "_", d)
					if _, err := p.CreateSnapshot(ctx, cur.Name(), sn, ""); err != nil {
						b.Fatal(err)
					}
					if cur, err = p.CloneSnapshot(ctx, sn, fmt.Sprint("c", i, "_", d), ""); err != nil {
						b.Fatal(err)
					}
				}
				targets = append(targets, cur)
			}
			b.ResetTimer()
			var iops, cpu [3][]float64
			var r1, r64, c1, c64 []float64
			for round := 0; round < rounds; round++ {
				var x, c [3]float64
				for i, d := range targets {
					x[i], c[i] = measure(b, d, span, false, slice, uint64(round*3+i))
					iops[i] = append(iops[i], x[i])
					cpu[i] = append(cpu[i], c[i])
				}
				r1 = append(r1, x[1]/x[0])
				r64 = append(r64, x[2]/x[0])
				c1 = append(c1, c[1]/c[0])
				c64 = append(c64, c[2]/c[0])
			}
			med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
			b.ReportMetric(med(iops[0]), "plain-IOPS")
			b.ReportMetric(med(iops[1]), "depth1-IOPS")
			b.ReportMetric(med(iops[2]), "depth64-IOPS")
			b.ReportMetric(100*med(r1), "depth1/plain-%")
			b.ReportMetric(100*med(r64), "depth64/plain-%")
			b.ReportMetric(med(cpu[0]), "plain-cpu-ns/op")
			b.ReportMetric(med(cpu[1]), "depth1-cpu-ns/op")
			b.ReportMetric(med(cpu[2]), "depth64-cpu-ns/op")
			b.ReportMetric(100*med(c1), "depth1/plain-cpu-%")
			b.ReportMetric(100*med(c64), "depth64/plain-cpu-%")
		})
	}
}
