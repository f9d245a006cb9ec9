// Package perf is Kura's load generator (in the spirit of spdk_nvme_perf and
// fio): it drives any blockdev.Device with a fixed number of outstanding
// I/Os and reports IOPS, bandwidth, latency percentiles and CPU cost per
// I/O. The CLI exposes it as `kura bench URI`.
package perf

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// Options describes a run.
type Options struct {
	// RWMixRead is the percentage of reads (0..100; 100 = read only).
	RWMixRead int
	// BlockSize is the I/O size in bytes (default 4096; a multiple of the
	// device block size).
	BlockSize int
	// QueueDepth is the number of outstanding I/Os per worker (default 1).
	QueueDepth int
	// Workers is the number of independent submitters (default 1). The
	// total outstanding I/O is Workers × QueueDepth.
	Workers int
	// Duration of the measured run (default 10 s). ctx may end it earlier.
	Duration time.Duration
	// Random selects random offsets; otherwise each submitter streams
	// sequentially through its own slice of the range.
	Random bool
	// Range limits I/O to [0, Range) (default: the whole device).
	Range int64
	// Seed makes offsets reproducible (default 1).
	Seed uint64
	// Prefill writes the range once before measuring reads, so reads of
	// thin devices hit real data.
	Prefill bool
	// Sync drives the device with one goroutine per outstanding I/O
	// calling ReadAt/WriteAt even when it implements blockdev.Async (by
	// default such devices are driven asynchronously: completions start
	// the next I/O on the device's completion goroutine).
	Sync bool
}

// Result is the outcome of a run.
type Result struct {
	Ops, Reads, Writes uint64
	Bytes              uint64
	Errors             uint64
	FirstError         error
	Elapsed            time.Duration
	IOPS               float64
	MBps               float64 // 10^6 bytes per second
	LatMean            time.Duration
	LatP50             time.Duration
	LatP99             time.Duration
	LatP999            time.Duration
	LatMax             time.Duration
	// CPU time of the whole process during the run (getrusage), and per
	// I/O. With an in-process target this includes the target's CPU.
	CPUUser, CPUSys time.Duration
	CPUPerIO        time.Duration
}

// String formats the result like one line of spdk_nvme_perf.
func (r Result) String() string {
	return fmt.Sprintf("%.0f IOPS, %.1f MB/s, lat mean %v p50 %v p99 %v p99.9 %v max %v, CPU %.1f µs/IO, errors %d",
		r.IOPS, r.MBps, r.LatMean.Round(time.Microsecond/10), r.LatP50.Round(time.Microsecond/10), r.LatP99.Round(time.Microsecond/10),
		r.LatP999.Round(time.Microsecond/10), r.LatMax.Round(time.Microsecond/10), float64(r.CPUPerIO.Nanoseconds())/1000, r.Errors)
}

// ErrInvalidOptions is returned for impossible option combinations.
var ErrInvalidOptions = errors.New("perf: invalid options")

func (o *Options) setDefaults(dev blockdev.Device) error {
	if o.BlockSize == 0 {
		o.BlockSize = 4096
	}
	if o.QueueDepth == 0 {
		o.QueueDepth = 1
	}
	if o.Workers == 0 {
		o.Workers = 1
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Range == 0 || o.Range > dev.Size() {
		o.Range = dev.Size()
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	bs := dev.BlockSize()
	switch {
	case o.RWMixRead < 0 || o.RWMixRead > 100:
		return fmt.Errorf("%w: rwmixread %d", ErrInvalidOptions, o.RWMixRead)
	case o.BlockSize < bs || o.BlockSize%bs != 0:
		return fmt.Errorf("%w: block size %d is not a multiple of the device block size %d", ErrInvalidOptions, o.BlockSize, bs)
	case o.QueueDepth < 0 || o.QueueDepth > 4096 || o.Workers < 0 || o.Workers > 1024:
		return fmt.Errorf("%w: queue depth %d, workers %d", ErrInvalidOptions, o.QueueDepth, o.Workers)
	case o.Range < int64(o.BlockSize):
		return fmt.Errorf("%w: range %d smaller than one I/O", ErrInvalidOptions, o.Range)
	}
	o.Range -= o.Range % int64(o.BlockSize)
	return nil
}

// Run drives dev with opts until Duration elapses or ctx ends.
func Run(ctx context.Context, dev blockdev.Device, opts Options) (Result, error) {
	if err := opts.setDefaults(dev); err != nil {
		return Result{}, err
	}
	if opts.Prefill && opts.RWMixRead > 0 {
		if err := prefill(ctx, dev, opts); err != nil {
			return Result{}, fmt.Errorf("perf: prefill: %w", err)
		}
	}
	n := opts.Workers * opts.QueueDepth
	blocks := opts.Range / int64(opts.BlockSize)
	stripe := max(blocks/int64(n), 1)
	runCtx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	var stop atomic.Bool
	go func() { <-runCtx.Done(); stop.Store(true) }()

	subs := make([]submitter, n)
	var wg sync.WaitGroup
	ru0 := rusage()
	start := time.Now()
	for i := range subs {
		s := &subs[i]
		s.rng = rand.New(rand.NewPCG(opts.Seed, uint64(i)))
		s.buf = blockdev.AlignedBuffer(opts.BlockSize) // O_DIRECT devices start it asynchronously
		for j := range s.buf {
			s.buf[j] = byte(i + j)
		}
		s.next = (int64(i) * stripe) % blocks
		s.lo, s.hi = s.next, min(s.next+stripe, blocks)
	}
	if a, ok := dev.(blockdev.Async); ok && !opts.Sync {
		runAsync(dev, a, subs, &opts, blocks, &stop)
	} else {
		for i := range subs {
			s := &subs[i]
			wg.Go(func() { s.run(dev, &opts, blocks, &stop) })
		}
		wg.Wait()
	}
	elapsed := time.Since(start)
	ru1 := rusage()

	var r Result
	var h histogram
	var sum time.Duration
	for i := range subs {
		s := &subs[i]
		r.Reads += s.reads
		r.Writes += s.writes
		r.Errors += s.errors
		if r.FirstError == nil {
			r.FirstError = s.firstErr
		}
		sum += s.latSum
		h.merge(&s.hist)
		r.LatMax = max(r.LatMax, s.latMax)
	}
	r.Ops = r.Reads + r.Writes
	r.Bytes = r.Ops * uint64(opts.BlockSize)
	r.Elapsed = elapsed
	secs := elapsed.Seconds()
	r.IOPS = float64(r.Ops) / secs
	r.MBps = float64(r.Bytes) / secs / 1e6
	if r.Ops > 0 {
		r.LatMean = sum / time.Duration(r.Ops)
		r.LatP50 = h.quantile(0.5)
		r.LatP99 = h.quantile(0.99)
		r.LatP999 = h.quantile(0.999)
		r.CPUUser = ru1.user - ru0.user
		r.CPUSys = ru1.sys - ru0.sys
		r.CPUPerIO = (r.CPUUser + r.CPUSys) / time.Duration(r.Ops)
	}
	if r.Ops == 0 && r.FirstError != nil {
		return r, fmt.Errorf("perf: no I/O completed: %w", r.FirstError)
	}
	return r, nil
}

type submitter struct {
	rng            *rand.Rand
	buf            []byte
	next, lo, hi   int64
	reads, writes  uint64
	errors         uint64
	firstErr       error
	latSum, latMax time.Duration
	hist           histogram
}

func (s *submitter) run(dev blockdev.Device, o *Options, blocks int64, stop *atomic.Bool) {
	for !stop.Load() {
		off, read := s.pick(o, blocks)
		t0 := time.Now()
		var err error
		if read {
			_, err = dev.ReadAt(s.buf, off)
		} else {
			_, err = dev.WriteAt(s.buf, off)
		}
		if !s.account(read, time.Since(t0), err) {
			return
		}
	}
}

// pick chooses the next I/O: its offset and whether it is a read.
func (s *submitter) pick(o *Options, blocks int64) (off int64, read bool) {
	var blk int64
	if o.Random {
		blk = s.rng.Int64N(blocks)
	} else {
		blk = s.next
		s.next++
		if s.next >= s.hi {
			s.next = s.lo
		}
	}
	read = o.RWMixRead == 100 || (o.RWMixRead > 0 && s.rng.IntN(100) < o.RWMixRead)
	return blk * int64(o.BlockSize), read
}

// account records one finished I/O; false means the device is closed and
// the submitter stops.
func (s *submitter) account(read bool, lat time.Duration, err error) bool {
	if err != nil {
		s.errors++
		if s.firstErr == nil {
			s.firstErr = err
		}
		return !errors.Is(err, blockdev.ErrClosed)
	}
	if read {
		s.reads++
	} else {
		s.writes++
	}
	s.latSum += lat
	s.latMax = max(s.latMax, lat)
	s.hist.add(lat)
	return true
}

func prefill(ctx context.Context, dev blockdev.Device, o Options) error {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i*31 + 7)
	}
	for off := int64(0); off < o.Range; off += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(chunk), o.Range-off)
		n -= n % int64(dev.BlockSize())
		if _, err := dev.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return dev.Flush()
}

type cpuTimes struct{ user, sys time.Duration }

func rusage() cpuTimes {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return cpuTimes{}
	}
	return cpuTimes{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
}

// histogram is a log-linear latency histogram: 16 sub-buckets per power of
// two (≤ 6.25 % error), nanosecond resolution up to ~18 min.
type histogram struct {
	counts [41 * 16]uint64
	total  uint64
}

func bucket(ns uint64) int {
	if ns < 16 {
		return int(ns)
	}
	e := bits.Len64(ns) - 5 // ns has e+5 bits; keep the top 5 (leading 1 + 4)
	i := (e+1)*16 + int(ns>>uint(e)&15)
	return min(i, len(histogram{}.counts)-1)
}

func bucketValue(i int) uint64 {
	if i < 16 {
		return uint64(i)
	}
	e := i/16 - 1
	return (16 | uint64(i%16)) << uint(e)
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucket(uint64(max(d, 0)))]++
	h.total++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	want := uint64(q*float64(h.total-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= want {
			return time.Duration(bucketValue(i))
		}
	}
	return 0
}
