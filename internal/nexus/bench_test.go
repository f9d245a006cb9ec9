package nexus

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// Benchmarks. Run them with -benchtime=1x: each measurement runs for a
// fixed time at a fixed queue depth and reports IOPS (or MB/s) itself, so
// the numbers do not depend on b.N. See docs/nexus.md for the method
// (alternating rounds, medians).

const (
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

// benchScheme is how benchmarks open files, for the baseline and the
// nexus children alike: "uring" (the engine's default for bare paths,
// when io_uring works) or "aio"; KURA_BENCH_SCHEME overrides.
func benchScheme() string {
	if s := os.Getenv("KURA_BENCH_SCHEME"); s != "" {
		return s
	}
	return blockdev.BareScheme()
}

func openDirect(b *testing.B, p string) blockdev.Device {
	d, err := fileOpener(context.Background(), p)
	if err != nil {
		b.Fatal(err)
	}
	if dd, ok := d.(interface{ Direct() bool }); ok && !dd.Direct() {
		b.Logf("warning: %s is not O_DIRECT", p)
	}
	return d
}

func fileOpener(_ context.Context, uri string) (blockdev.Device, error) {
	if benchScheme() == "uring" {
		return blockdev.OpenUring(uri, blockdev.FileOptions{BlockSize: 4096})
	}
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

// paired measures a and b alternately (a,b then b,a ...) for pairs rounds
// and reports the medians of each and of the per-round ratio b/a. On a
// machine shared with other work, load changes between rounds hit both
// sides of a pair alike, so the ratio is far more stable than either side.
func paired(b *testing.B, pairs int, unit, aName, bName string, a, bf func() float64) {
	var as, bs, rs []float64
	for i := range pairs {
		var x, y float64
		if i%2 == 0 {
			x = a()
			y = bf()
		} else {
			y = bf()
			x = a()
		}
		as, bs, rs = append(as, x), append(bs, y), append(rs, y/x)
	}
	b.ReportMetric(median(as), aName+"-"+unit)
	b.ReportMetric(median(bs), bName+"-"+unit)
	b.ReportMetric(median(rs), bName+"/"+aName)
	b.Logf("%s: %v", aName, as)
	b.Logf("%s: %v", bName, bs)
}

// cpuTime is the process' user+system CPU time in ns: on a machine shared
// with other work it is a steadier cost measure than wall time.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

const (
	benchPairs = 12
	benchSlice = 400 * time.Millisecond
)

// BenchmarkQD32 compares one O_DIRECT file alone with a nexus whose only
// child is that file: 4 KiB random I/O, 32 concurrent requests.
func BenchmarkQD32(b *testing.B) {
	dir := benchDir(b)
	p := benchFile(b, dir, "f0", benchFileSize)
	child := openDirect(b, p)
	defer child.Close()
	nx := benchNexus(b, []string{p}, 0)
	for _, op := range []string{"write", "read"} {
		b.Run(op, func(b *testing.B) {
			w := op == "write"
			// CPU time per I/O of each side, summed over its slices.
			var cpu, ios [2]float64
			side := func(i int, d blockdev.Device) func() float64 {
				return func() float64 {
					c0, t0 := cpuTime(), time.Now()
					iops := measure([]blockdev.Device{d}, benchQD, benchSlice, w)
					cpu[i] += float64(cpuTime() - c0)
					ios[i] += iops * time.Since(t0).Seconds()
					return iops
				}
			}
			for range b.N {
				paired(b, benchPairs, "IOPS", "child", "nexus1", side(0, child), side(1, nx))
			}
			b.ReportMetric(cpu[0]/ios[0], "child-cpu-ns/IO")
			b.ReportMetric(cpu[1]/ios[1], "nexus1-cpu-ns/IO")
		})
	}
}

// BenchmarkMirror3 compares a 3-way nexus over three files (QD32, i.e. 96
// child writes in flight) with writing the three files directly from 96
// goroutines. The metric is file writes per second (nexus IOPS × 3).
func BenchmarkMirror3(b *testing.B) {
	dir := benchDir(b)
	var ps []string
	var devs []blockdev.Device
	for i := range 3 {
		p := benchFile(b, dir, fmt.Sprintf("m%d", i), benchFileSize)
		ps = append(ps, p)
		d := openDirect(b, p)
		defer d.Close()
		devs = append(devs, d)
	}
	nx := benchNexus(b, ps, 0)
	mirror := &handMirror{devs: devs}
	b.Run("vs-direct", func(b *testing.B) {
		for range b.N {
			paired(b, benchPairs, "file-writes/s", "direct", "nexus3",
				func() float64 { return measure(devs, 3*benchQD, benchSlice, true) },
				func() float64 { return 3 * measure([]blockdev.Device{nx}, benchQD, benchSlice, true) })
		}
	})
	b.Run("vs-handmirror", func(b *testing.B) {
		for range b.N {
			paired(b, benchPairs, "file-writes/s", "handmirror", "nexus3",
				func() float64 { return 3 * measure([]blockdev.Device{mirror}, benchQD, benchSlice, true) },
				func() float64 { return 3 * measure([]blockdev.Device{nx}, benchQD, benchSlice, true) })
		}
	})
}

// handMirror is the simplest possible synchronous mirror (write the three
// files concurrently, wait for all): it separates the inherent cost of
// waiting for the slowest mirror from the nexus' own overhead.
type handMirror struct {
	devs []blockdev.Device
}

func (m *handMirror) WriteAt(p []byte, off int64) (int, error) {
	var wg sync.WaitGroup
	for _, d := range m.devs[1:] {
		wg.Go(func() { d.WriteAt(p, off) })
	}
	n, err := m.devs[0].WriteAt(p, off)
	wg.Wait()
	return n, err
}
func (m *handMirror) ReadAt(p []byte, off int64) (int, error) { return m.devs[0].ReadAt(p, off) }
func (m *handMirror) Flush() error                            { return nil }
func (m *handMirror) Unmap(off, length int64) error           { return nil }
func (m *handMirror) WriteZeroes(off, length int64) error     { return nil }
func (m *handMirror) Size() int64                             { return m.devs[0].Size() }
func (m *handMirror) BlockSize() int                          { return m.devs[0].BlockSize() }
func (m *handMirror) Close() error                            { return nil }

// BenchmarkRebuild compares a full nexus rebuild of a 64 MiB file with a
// plain sequential copy (1 MiB read + write, then fdatasync) of the same
// bytes between the same files.
func BenchmarkRebuild(b *testing.B) {
	dir := benchDir(b)
	src := benchFile(b, dir, "src", benchFileSize)
	dst := benchFile(b, dir, "dst", benchFileSize)
	raw := func() float64 {
		s, d := openDirect(b, src), openDirect(b, dst)
		defer s.Close()
		defer d.Close()
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
		return float64(s.Size()) / 1e6 / time.Since(start).Seconds()
	}
	nexus := func() float64 {
		n := benchNexus(b, []string{src}, 0)
		defer n.Shutdown(context.Background())
		start := time.Now()
		if err := n.AddChild(context.Background(), dst); err != nil {
			b.Fatal(err)
		}
		for childState(n, dst).State != ChildOpen {
			time.Sleep(200 * time.Microsecond)
		}
		return float64(n.Size()) / 1e6 / time.Since(start).Seconds()
	}
	for range b.N {
		paired(b, 4, "MB/s", "rawcopy", "rebuild", raw, nexus)
	}
}

// BenchmarkClientDuringRebuild measures client 4 KiB random-write IOPS
// (QD32) on a nexus with two healthy file children, alternating between
// no rebuild and a rebuild of a third child (added, measured, removed
// again), rate-limited to 16 MiB/s or unthrottled.
func BenchmarkClientDuringRebuild(b *testing.B) {
	dir := benchDir(b)
	size := int64(128 << 20)
	ps := []string{benchFile(b, dir, "a", size), benchFile(b, dir, "b", size)}
	third := benchFile(b, dir, "c", size)
	for _, mode := range []struct {
		name string
		rate int64
	}{{"limited-16MiB", 16 << 20}, {"unlimited", 0}} {
		b.Run(mode.name, func(b *testing.B) {
			n := benchNexus(b, ps, mode.rate)
			var rates []float64
			none := func() float64 { return measure([]blockdev.Device{n}, benchQD, benchSlice, true) }
			during := func() float64 {
				if err := n.AddChild(context.Background(), third); err != nil {
					b.Fatal(err)
				}
				iops := measure([]blockdev.Device{n}, benchQD, benchSlice, true)
				if st, err := n.RebuildStats(third); err == nil {
					rates = append(rates, st.RateBps/1e6)
				}
				if err := n.RemoveChild(context.Background(), third); err != nil {
					b.Fatal(err)
				}
				return iops
			}
			for range b.N {
				paired(b, 6, "IOPS", "idle", "rebuilding", none, during)
				if len(rates) > 0 {
					b.ReportMetric(median(rates), "rebuild-MB/s")
				}
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

// BenchmarkOverhead is the CPU cost of one 4 KiB I/O from a single
// goroutine (QD1) on a memory device: alone, through a one-child nexus
// (inline dispatch and worker-isolated dispatch), and through a three-way
// mirror. The difference is the nexus' own per-I/O cost.
func BenchmarkOverhead(b *testing.B) {
	for _, op := range []string{"read", "write"} {
		for _, sys := range []string{"malloc", "nexus1", "nexus1-isolated", "nexus3", "nexus3-isolated"} {
			b.Run(op+"/"+sys, func(b *testing.B) {
				var dev blockdev.Device
				if sys == "malloc" {
					m, _ := blockdev.NewMalloc("m", 64<<20, 512)
					defer m.Close()
					dev = m
				} else {
					k := 1
					if sys[5] == '3' {
						k = 3
					}
					e := newEnv(b, 64<<20)
					cfg := e.config(uris(k)...)
					cfg.IsolateChildIO = len(sys) > 6
					cfg.Opener = func(_ context.Context, uri string) (blockdev.Device, error) {
						return blockdev.NewMalloc(uri, 64<<20, 512)
					}
					dev = e.newNexus(cfg)
				}
				dev.WriteAt(make([]byte, 64<<20), 0)
				buf := make([]byte, 4096)
				b.ReportAllocs()
				b.ResetTimer()
				c0 := cpuTime()
				defer func() { b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op") }()
				var off int64
				for range b.N {
					off = (off + 4096*7) % (64 << 20)
					if op == "read" {
						dev.ReadAt(buf, off)
					} else {
						dev.WriteAt(buf, off)
					}
				}
			})
		}
	}
}

// BenchmarkWriteIntent measures the cost of Config.WriteIntent: QD32 4 KiB
// random writes on a two-file nexus with and without the intent log
// (1 MiB segments, rotation every second, so the bitmap is re-marked
// often).
func BenchmarkWriteIntent(b *testing.B) {
	dir := benchDir(b)
	ps := []string{benchFile(b, dir, "wa", benchFileSize), benchFile(b, dir, "wb", benchFileSize)}
	open := func(intent bool) *Nexus {
		n, err := New(context.Background(), Config{Name: "wi", Children: ps, Opener: fileOpener,
			LogDir: dir, WriteIntent: intent, IntentInterval: time.Second,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	for range b.N {
		paired(b, benchPairs, "IOPS", "off", "intent",
			func() float64 {
				n := open(false)
				defer n.Shutdown(context.Background())
				return measure([]blockdev.Device{n}, benchQD, benchSlice, true)
			},
			func() float64 {
				n := open(true)
				defer n.Shutdown(context.Background())
				return measure([]blockdev.Device{n}, benchQD, benchSlice, true)
			})
	}
}
