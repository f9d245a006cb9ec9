package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvmetcp"
	"github.com/kura-io/kura/internal/perf"
)

func newBenchCmd(g *globals) *cobra.Command {
	var (
		rw       string
		bs       string
		qd       int
		workers  int
		duration time.Duration
		mix      int
		prefill  bool
		rng      string
		sync     bool
		queues   int
	)
	cmd := &cobra.Command{
		Use:   "bench URI",
		Short: "Measure a block device: IOPS, bandwidth, latency percentiles, CPU per I/O",
		Long: `Drive a block device from this process with a fixed number of outstanding
I/Os and report IOPS, MB/s, latency percentiles and CPU per I/O.
URI is any device URI: nvmf://host:8420/NQN (a Kura or Linux target, through
Kura's NVMe/TCP initiator), aio:///path, uring:///path, malloc:///m?size_mb=N.
Writes destroy data on the device.`,
		Example: "  kura bench nvmf://127.0.0.1:8420/nqn.2019-05.io.kura:vol1 --rw randread --qd 32 --time 10s\n  kura bench uring:///dev/nvme1n1 --rw randrw --mix 70 --bs 4k",
		Args:    exactArgs("URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := perf.Options{QueueDepth: qd, Workers: workers, Duration: duration, Prefill: prefill, Sync: sync}
			switch rw {
			case "read":
				o.RWMixRead = 100
			case "write":
				o.RWMixRead = 0
			case "randread":
				o.RWMixRead, o.Random = 100, true
			case "randwrite":
				o.RWMixRead, o.Random = 0, true
			case "randrw":
				o.RWMixRead, o.Random = mix, true
			case "rw":
				o.RWMixRead = mix
			default:
				return usageError{fmt.Errorf("--rw %q: want read, write, randread, randwrite, randrw or rw", rw)}
			}
			b, err := parseSize(bs, 1)
			if err != nil {
				return usageError{fmt.Errorf("--bs: %w", err)}
			}
			o.BlockSize = int(b)
			if rng != "" {
				r, err := parseSize(rng, 1<<20)
				if err != nil {
					return usageError{fmt.Errorf("--range: %w", err)}
				}
				o.Range = int64(r)
			}
			uri, err := withQueues(args[0], queues)
			if err != nil {
				return usageError{err}
			}
			reg := blockdev.NewRegistry()
			nvmetcp.RegisterScheme(reg)
			ctx := cmd.Context()
			dev, err := reg.Open(ctx, uri)
			if err != nil {
				return err
			}
			defer dev.Close()
			nq := 0 // I/O queues the target granted (NVMe/TCP only)
			if d, ok := dev.(*nvmetcp.Device); ok {
				nq = d.IOQueues()
			}
			res, err := perf.Run(ctx, dev, o)
			if err != nil {
				return err
			}
			if g.output == "json" {
				out := map[string]any{
					"uri": args[0], "rw": rw, "block_size": o.BlockSize, "queue_depth": qd, "workers": workers, "io_queues": nq,
					"ops": res.Ops, "reads": res.Reads, "writes": res.Writes, "errors": res.Errors,
					"elapsed_ns": res.Elapsed.Nanoseconds(), "iops": res.IOPS, "mbps": res.MBps,
					"lat_mean_ns": res.LatMean.Nanoseconds(), "lat_p50_ns": res.LatP50.Nanoseconds(),
					"lat_p99_ns": res.LatP99.Nanoseconds(), "lat_p999_ns": res.LatP999.Nanoseconds(),
					"lat_max_ns": res.LatMax.Nanoseconds(), "cpu_per_io_ns": res.CPUPerIO.Nanoseconds(),
				}
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			qs := ""
			if nq > 0 {
				qs = fmt.Sprintf(" io-queues=%d", nq)
			}
			fmt.Fprintf(g.stdout, "%s %s bs=%d qd=%dx%d%s: %s\n", args[0], rw, o.BlockSize, workers, qd, qs, res)
			if res.Errors > 0 {
				return fmt.Errorf("%d I/O errors, first: %w", res.Errors, res.FirstError)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&rw, "rw", "randread", "read, write, randread, randwrite, randrw or rw")
	f.StringVar(&bs, "bs", "4KiB", "I/O size")
	f.IntVar(&qd, "qd", 32, "outstanding I/Os per worker")
	f.IntVar(&workers, "workers", 1, "independent submitters")
	f.DurationVar(&duration, "time", 10*time.Second, "measured run time")
	f.IntVar(&mix, "mix", 70, "percentage of reads for randrw/rw")
	f.BoolVar(&prefill, "prefill", false, "write the range once before measuring (reads of thin devices hit data)")
	f.StringVar(&rng, "range", "", "limit I/O to the first SIZE of the device (MiB or with a unit)")
	f.IntVar(&queues, "queues", 0, "NVMe/TCP I/O queues (connections) to open, as nr_io_queues in the URI (0: the initiator's default, one per CPU)")
	f.BoolVar(&sync, "sync", false, "one goroutine per outstanding I/O calling the device synchronously, even when it can run I/O asynchronously (nvmf://, uring://)")
	return cmd
}

// withQueues returns uri with nr_io_queues=n (n > 0); only nvmf:// URIs
// have I/O queues, and a URI that names another count is refused.
func withQueues(uri string, n int) (string, error) {
	switch {
	case n == 0:
		return uri, nil
	case n < 0:
		return "", fmt.Errorf("--queues %d: want a positive count", n)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("--queues: %w", err)
	}
	if u.Scheme != "nvmf" && u.Scheme != "nvmf+tcp" {
		return "", fmt.Errorf("--queues: only nvmf:// devices have I/O queues, not %s://", u.Scheme)
	}
	q := u.Query()
	if v := q.Get("nr_io_queues"); v != "" && v != strconv.Itoa(n) {
		return "", fmt.Errorf("--queues %d: the URI asks for nr_io_queues=%s", n, v)
	}
	q.Set("nr_io_queues", strconv.Itoa(n))
	u.RawQuery = q.Encode()
	return u.String(), nil
}
