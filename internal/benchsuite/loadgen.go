package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// GoLoad drives dev with w.QD goroutines, each with one I/O in flight, for
// ramp+runtime and reports what completed after the ramp. It is the
// stand-in load generator for devices fio cannot reach (Kura's NVMe/TCP
// initiator) while `kura bench` is not available. Client CPU is the whole
// process's CPU time over the measured window.
func GoLoad(ctx context.Context, dev blockdev.Device, w Workload, runtime, ramp time.Duration) (Metrics, error) {
	bs := int64(w.BS)
	blocks := dev.Size() / bs
	if blocks <= 0 {
		return Metrics{}, fmt.Errorf("device of %d bytes is smaller than one %d-byte I/O", dev.Size(), bs)
	}
	start := time.Now()
	measureFrom := start.Add(ramp)
	end := measureFrom.Add(runtime)
	type result struct {
		lats []time.Duration
		err  error
	}
	results := make([]result, w.QD)
	var cpu0 time.Duration
	var cpuOnce sync.Once
	var wg sync.WaitGroup
	for i := 0; i < w.QD; i++ {
		wg.Add(1)
		go func(i int) { // owned: ends at end or on the first error
			defer wg.Done()
			buf := make([]byte, bs)
			for j := range buf {
				buf[j] = byte(i + j)
			}
			rng := rand.New(rand.NewPCG(uint64(i)+1, uint64(start.UnixNano())))
			lats := make([]time.Duration, 0, 1<<16)
			// Sequential workloads: each goroutine walks its own stripe.
			next := int64(i) * (blocks / int64(w.QD))
			for ctx.Err() == nil {
				now := time.Now()
				if now.After(end) {
					break
				}
				var blk int64
				if w.Random() {
					blk = rng.Int64N(blocks)
				} else {
					blk = next % blocks
					next++
				}
				var err error
				if w.Write() {
					_, err = dev.WriteAt(buf, blk*bs)
				} else {
					_, err = dev.ReadAt(buf, blk*bs)
				}
				done := time.Now()
				if err != nil {
					results[i].err = err
					return
				}
				if now.After(measureFrom) {
					cpuOnce.Do(func() { cpu0, _ = cpuTime(os.Getpid()) })
					lats = append(lats, done.Sub(now))
				}
			}
			results[i].lats = lats
		}(i)
	}
	wg.Wait()
	cpu1, _ := cpuTime(os.Getpid())
	if err := ctx.Err(); err != nil {
		return Metrics{}, err
	}
	var all []time.Duration
	for _, r := range results {
		if r.err != nil {
			return Metrics{}, r.err
		}
		all = append(all, r.lats...)
	}
	if len(all) == 0 {
		return Metrics{}, errors.New("no I/O completed in the measured window")
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	var sum time.Duration
	for _, l := range all {
		sum += l
	}
	secs := runtime.Seconds()
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	m := Metrics{
		IOPS:      float64(len(all)) / secs,
		BWBytes:   float64(int64(len(all))*bs) / secs,
		LatMeanUs: us(sum) / float64(len(all)),
		LatP50Us:  us(all[len(all)/2]),
		LatP99Us:  us(all[len(all)*99/100]),
		IOs:       int64(len(all)),
		RuntimeMs: runtime.Milliseconds(),
	}
	if cpu1 > cpu0 && cpu0 > 0 {
		m.ClientCPUUsPerIO = us(cpu1-cpu0) / float64(len(all))
	}
	return m, nil
}

// fillDevice writes the whole device once, sequentially, with 8 writers.
func fillDevice(ctx context.Context, dev blockdev.Device) error {
	const chunk = 1 << 20
	size := dev.Size()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func(i int) { // owned: ends when its share is written
			defer wg.Done()
			buf := make([]byte, chunk)
			for j := range buf {
				buf[j] = byte(j*7 + 1)
			}
			for off := int64(i) * chunk; off < size && ctx.Err() == nil; off += int64(len(errs)) * chunk {
				n := min(int64(chunk), size-off)
				if _, err := dev.WriteAt(buf[:n], off); err != nil {
					errs[i] = err
					return
				}
			}
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return dev.Flush()
}
