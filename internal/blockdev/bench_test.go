package blockdev_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kura-io/kura/internal/blockdev"
)

// Benchmarks: 4 KiB random I/O on a 256 MiB file with O_DIRECT, pread/pwrite
// (aio) against io_uring, at queue depth 1 and with 32 goroutines (QD32 with
// GOMAXPROCS=2: SetParallelism(16)). Results are in docs/blockdev-bench.md.
//
//	go test -run XXX -bench 'Rand' -benchmem -count 3 ./internal/blockdev/

const benchFileSize = 256 << 20

var bench struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.dir != "" {
		os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

// benchPath returns a 256 MiB file full of data (not sparse, so reads hit
// the disk), created once per test binary.
func benchPath(b *testing.B) string {
	bench.once.Do(func() {
		parent := "" // the default temp dir, unless it is tmpfs (no O_DIRECT there)
		var st unix.Statfs_t
		if unix.Statfs(os.TempDir(), &st) == nil && st.Type == unix.TMPFS_MAGIC {
			parent = "/var/tmp"
		}
		bench.dir, bench.err = os.MkdirTemp(parent, "kura-blockdev-bench-")
		if bench.err != nil {
			return
		}
		bench.path = filepath.Join(bench.dir, "bench.img")
		f, err := os.Create(bench.path)
		if err != nil {
			bench.err = err
			return
		}
		defer f.Close()
		buf := make([]byte, 4<<20)
		for i := range buf {
			buf[i] = byte(i*7 + 1)
		}
		for off := 0; off < benchFileSize; off += len(buf) {
			if _, err := f.Write(buf); err != nil {
				bench.err = err
				return
			}
		}
		bench.err = f.Sync()
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.path
}

func benchOpen(b *testing.B, kind string) blockdev.Device {
	path := benchPath(b)
	var d blockdev.Device
	var err error
	switch kind {
	case "pread":
		d, err = blockdev.OpenFile(path, blockdev.FileOptions{BlockSize: 4096})
	case "uring":
		skipNoUring(b)
		d, err = blockdev.OpenUring(path, blockdev.FileOptions{BlockSize: 4096})
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	if !d.(interface{ Direct() bool }).Direct() {
		b.Fatalf("%s: no O_DIRECT; the benchmark would measure the page cache", path)
	}
	return d
}

// pageBuf returns a 4 KiB buffer, page-aligned unless shift is non-zero.
func pageBuf(shift int) []byte {
	raw := make([]byte, 3*4096)
	a := int(uintptr(unsafe.Pointer(&raw[0])) % 4096)
	start := (4096-a)%4096 + shift
	return raw[start : start+4096]
}

var benchSeed atomic.Uint64

func benchRand(b *testing.B, kind string, write bool, par, shift int) {
	d := benchOpen(b, kind)
	blocks := d.Size() / 4096
	b.SetBytes(4096)
	b.ReportAllocs()
	op := d.ReadAt
	if write {
		op = d.WriteAt
	}
	defer reportCPU(b, cpuTime())
	if par == 0 {
		buf := pageBuf(shift)
		r := rand.New(rand.NewPCG(benchSeed.Add(1), 0))
		b.ResetTimer()
		for b.Loop() {
			if _, err := op(buf, r.Int64N(blocks)*4096); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(par)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := pageBuf(shift)
		r := rand.New(rand.NewPCG(benchSeed.Add(1), 0))
		for pb.Next() {
			if _, err := op(buf, r.Int64N(blocks)*4096); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// parallelism giving 32 goroutines in flight.
func qd32() int { return max(1, 32/runtimeProcs()) }

func BenchmarkRandRead4K(b *testing.B)  { benchMatrix(b, false) }
func BenchmarkRandWrite4K(b *testing.B) { benchMatrix(b, true) }

func benchMatrix(b *testing.B, write bool) {
	for _, kind := range []string{"pread", "uring"} {
		b.Run(fmt.Sprintf("%s/QD1", kind), func(b *testing.B) { benchRand(b, kind, write, 0, 0) })
		b.Run(fmt.Sprintf("%s/QD32", kind), func(b *testing.B) { benchRand(b, kind, write, qd32(), 0) })
		b.Run(fmt.Sprintf("%s/QD32-unaligned", kind), func(b *testing.B) { benchRand(b, kind, write, qd32(), 8) })
	}
}

// cpuTime returns the process's user+system CPU time (all threads,
// including io_uring workers, which belong to the process).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports CPU time per operation since start: less sensitive to
// other load on a shared machine than ns/op.
func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}
