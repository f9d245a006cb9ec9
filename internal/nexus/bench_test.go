package nexus

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// Benchmarks. Run them with -benchtime=1x: each measurement runs for
// benchDur at a fixed queue depth and reports IOPS (or MB/s) itself, so
// the numbers do not depend on b.N. See docs/nexus.md for the method
// (alternating rounds, medians).

const (
	benchDur      = 3 * time.Second
	benchFileSize = 64 << 20
	benchQD       = 32
)

func benchDir(b *testing.B) string {
	if d := os.Getenv("KURA_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "nexus-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

// benchFile creates a fully written file (so writes do not allocate
// extents) and returns its path.
func benchFile(b *testing.B, dir, name string, size int64) string {
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		f.WriteAt(buf, off)
	}
	f.Sync()
	f.Close()
	return p
}

func openDirect(b *testing.B, p string) blockdev.Device {
	d, err := blockdev.OpenFile(p, blockdev.FileOptions{BlockSize: 4096})
	if err != nil {
		b.Fatal(err)
	}
	if !d.Direct() {
		b.Logf("warning: %s is not O_DIRECT", p)
	}
	return d
}

func fileOpener(_ context.Context, uri string) (blockdev.Device, error) {
	return blockdev.OpenFile(uri, blockdev.FileOptions{BlockSize: 4096})
}

func benchNexus(b *testing.B, children []string, rate int64) *Nexus {
	n, err := New(context.Background(), Config{Name: "bench", Children: children, Opener: fileOpener,
		RebuildRate: rate, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Shutdown(context.Background()) })
	return n
}

// measure runs qd goroutines of 4 KiB random I/O for d and returns IOPS.
// devs are used round-robin by goroutine (goroutine g uses devs[g%len]).
func measure(devs []blockdev.Device, qd int, d time.Duration, write bool) float64 {
	var ops atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range qd {
		dev := devs[g%len(devs)]
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 3))
			buf := make([]byte, 4096)
			nblk := dev.Size() / 4096
			var k int64
			for {
				select {
				case <-stop:
					ops.Add(k)
					return
				default:
				}
				off := r.Int64N(nblk) * 4096
				var err error
				if write {
					_, err = dev.WriteAt(buf, off)
				} else {
					_, err = dev.ReadAt(buf, off)
				}
				if err != nil {
					panic(err)
				}
				k++
			}
		})
	}
	start := time.Now()
	time.Sleep(d)
	close(stop)
	wg.Wait()
	return float64(ops.Load()) / time.Since(start).Seconds()
}

// BenchmarkQD32 compares one O_DIRECT file alone with a nexus whose only
// child is that file: 4 KiB random I/O, 32 concurrent requests.
func BenchmarkQD32(b *testing.B) {
	dir := benchDir(b)
	p := benchFile(b, dir, "f0", benchFileSize)
	for _, op := range []string{"write", "read"} {
		for _, sys := range []string{"child", "nexus1"} {
			b.Run(op+"/"+sys, func(b *testing.B) {
				var dev blockdev.Device
				if sys == "child" {
					dev = openDirect(b, p)
					defer dev.Close()
				} else {
					dev = benchNexus(b, []string{p}, 0)
				}
				for range b.N {
					b.ReportMetric(measure([]blockdev.Device{dev}, benchQD, benchDur, op == "write"), "IOPS")
				}
			})
		}
	}
}

// BenchmarkMirror3 compares a 3-way nexus over three files (QD32, i.e. 96
// child writes in flight) with writing the three files directly from 96
// goroutines. The metric is file writes per second (nexus IOPS × 3).
func BenchmarkMirror3(b *testing.B) {
	dir := benchDir(b)
	var ps []string
	for i := range 3 {
		ps = append(ps, benchFile(b, dir, fmt.Sprintf("m%d", i), benchFileSize))
	}
	b.Run("direct", func(b *testing.B) {
		var devs []blockdev.Device
		for _, p := range ps {
			d := openDirect(b, p)
			defer d.Close()
			devs = append(devs, d)
		}
		for range b.N {
			b.ReportMetric(measure(devs, 3*benchQD, benchDur, true), "file-writes/s")
		}
	})
	b.Run("nexus3", func(b *testing.B) {
		n := benchNexus(b, ps, 0)
		for range b.N {
			iops := measure([]blockdev.Device{n}, benchQD, benchDur, true)
			b.ReportMetric(3*iops, "file-writes/s")
			b.ReportMetric(iops, "IOPS")
		}
	})
}

// BenchmarkRebuild compares a full nexus rebuild of a 64 MiB file with a
// plain sequential copy (1 MiB read + write, then fdatasync) of the same
// bytes between the same kind of files.
func BenchmarkRebuild(b *testing.B) {
	dir := benchDir(b)
	src := benchFile(b, dir, "src", benchFileSize)
	b.Run("rawcopy", func(b *testing.B) {
		for range b.N {
			dp := benchFile(b, dir, "dst-raw", benchFileSize)
			s, d := openDirect(b, src), openDirect(b, dp)
			buf := make([]byte, 1<<20)
			start := time.Now()
			for off := int64(0); off < s.Size(); off += int64(len(buf)) {
				if _, err := s.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
				if _, err := d.WriteAt(buf, off); err != nil {
					b.Fatal(err)
				}
			}
			d.Flush()
			b.ReportMetric(float64(s.Size())/1e6/time.Since(start).Seconds(), "MB/s")
			s.Close()
			d.Close()
		}
	})
	b.Run("nexus", func(b *testing.B) {
		for range b.N {
			dp := benchFile(b, dir, "dst-nx", benchFileSize)
			n := benchNexus(b, []string{src}, 0)
			start := time.Now()
			if err := n.AddChild(context.Background(), dp); err != nil {
				b.Fatal(err)
			}
			for childState(n, dp).State != ChildOpen {
				time.Sleep(time.Millisecond)
			}
			b.ReportMetric(float64(n.Size())/1e6/time.Since(start).Seconds(), "MB/s")
			n.Shutdown(context.Background())
		}
	})
}

// BenchmarkClientDuringRebuild measures client 4 KiB random-write IOPS
// (QD32) on a nexus with two healthy file children: without a rebuild,
// while a third child is rebuilt at 16 MiB/s, and while it is rebuilt
// unthrottled.
func BenchmarkClientDuringRebuild(b *testing.B) {
	dir := benchDir(b)
	size := int64(256 << 20) // the rebuild outlasts the measurement at 16 MiB/s
	ps := []string{benchFile(b, dir, "a", size), benchFile(b, dir, "b", size)}
	for _, mode := range []struct {
		name string
		rate int64
		add  bool
	}{{"none", 0, false}, {"limited-16MiB", 16 << 20, true}, {"unlimited", 0, true}} {
		b.Run(mode.name, func(b *testing.B) {
			for range b.N {
				n := benchNexus(b, ps, mode.rate)
				var third string
				if mode.add {
					third = benchFile(b, dir, "c", size)
					if err := n.AddChild(context.Background(), third); err != nil {
						b.Fatal(err)
					}
				}
				iops := measure([]blockdev.Device{n}, benchQD, benchDur, true)
				b.ReportMetric(iops, "IOPS")
				if mode.add {
					st, err := n.RebuildStats(third)
					if err == nil {
						b.ReportMetric(st.RateBps/1e6, "rebuild-MB/s")
					} else {
						h := n.RebuildHistory()
						b.ReportMetric(h[len(h)-1].Stats.RateBps/1e6, "rebuild-MB/s")
					}
				}
				n.Shutdown(context.Background())
			}
		})
	}
}

// BenchmarkHotPath measures the per-I/O cost of the nexus itself over
// memory children (allocations included: run with -benchmem).
func BenchmarkHotPath(b *testing.B) {
	for _, k := range []int{1, 3} {
		for _, op := range []string{"write", "read"} {
			b.Run(fmt.Sprintf("malloc%d/%s", k, op), func(b *testing.B) {
				e := newEnv(b, 64<<20)
				cfg := e.config(uris(k)...)
				cfg.Opener = func(_ context.Context, uri string) (blockdev.Device, error) {
					return blockdev.NewMalloc(uri, 64<<20, 512)
				}
				n := e.newNexus(cfg)
				n.WriteAt(make([]byte, 64<<20), 0)
				b.ReportAllocs()
				b.ResetTimer()
				b.SetParallelism(benchQD / 2)
				b.RunParallel(func(pb *testing.PB) {
					buf := make([]byte, 4096)
					r := rand.New(rand.NewPCG(rand.Uint64(), 1))
					for pb.Next() {
						off := r.Int64N(16384) * 4096
						if op == "write" {
							n.WriteAt(buf, off)
						} else {
							n.ReadAt(buf, off)
						}
					}
				})
			})
		}
	}
}
