package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/engine"
)

// daemonFlags are the flags shared by kura engine and kura up.
type daemonFlags struct {
	dataDir  string
	grpc     string
	nvmf     string
	nbd      string
	node     string
	metrics  string
	logLevel string
	childTO  time.Duration
}

func (d *daemonFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&d.grpc, "grpc", engine.DefaultGRPCAddr, "gRPC API listen address")
	f.StringVar(&d.nvmf, "nvmf", engine.DefaultNVMeAddr, `NVMe/TCP target listen address ("off" disables it)`)
	f.StringVar(&d.nbd, "nbd", engine.DefaultNBDAddr, `NBD server listen address ("off" disables it)`)
	f.StringVar(&d.node, "node-name", "", "node name reported to clients (default: host name)")
	f.StringVar(&d.metrics, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9500; default off)")
	f.StringVar(&d.logLevel, "log-level", "info", "debug, info, warn or error")
	f.DurationVar(&d.childTO, "child-timeout", engine.DefaultChildTimeout, "a nexus child whose I/O takes longer is faulted (and rebuilt when it returns)")
}

func (d *daemonFlags) config() (engine.Config, error) {
	engineGOMAXPROCS()
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(d.logLevel)); err != nil {
		return engine.Config{}, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", d.logLevel)}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	return engine.Config{
		DataDir: d.dataDir, GRPCAddr: d.grpc, NVMeAddr: d.nvmf, NBDAddr: d.nbd,
		NodeName: d.node, MetricsAddr: d.metrics, Logger: log, ChildTimeout: d.childTO,
	}, nil
}

// signalContext is cancelled on SIGINT or SIGTERM.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func newEngineCmd(_ *globals) *cobra.Command {
	var d daemonFlags
	cmd := &cobra.Command{
		Use:   "engine --data-dir DIR",
		Short: "Run the storage engine of this node",
		Long: `Run the storage engine: pools, replicas, bdevs and their NVMe/TCP and NBD
exports, managed through the gRPC API (reflection and health enabled, so
grpcurl works). The engine remembers its pools and shares in DIR and
re-creates them on the next start. SIGINT/SIGTERM stop it cleanly.`,
		Example: "  kura engine --data-dir /var/lib/kura\n  kura engine --data-dir /var/lib/kura --grpc 0.0.0.0:10124 --nvmf 10.0.0.5:8420",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if d.dataDir == "" {
				return usageError{errors.New("--data-dir is required")}
			}
			cfg, err := d.config()
			if err != nil {
				return err
			}
			e, err := engine.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			return e.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&d.dataDir, "data-dir", "", "directory for the engine state (required)")
	d.add(cmd)
	return cmd
}

// defaultDataDir is ~/.local/share/kura, or ./kura-data without a home.
func defaultDataDir() string {
	if h, err := os.UserHomeDir(); err == nil && h != "" && h != "/" {
		return filepath.Join(h, ".local", "share", "kura")
	}
	return "kura-data"
}

// engineGOMAXPROCS sets the engine's GOMAXPROCS policy; an explicit
// GOMAXPROCS in the environment wins.
//
// When pool disks given as paths open as aio:// (io_uring unavailable),
// it is at least 8, so goroutines blocked in pread/pwrite do not hold up
// the Ps that serve sockets: measured at 4k QD32 over NBD, 8 served
// ~1.35x the IOPS of 2 (docs/nbd.md, "GOMAXPROCS").
//
// Otherwise it is the Go default, raised while ring-mode threads are open
// (blockdev.SetThreadQueueHook) to one more than their number. A ring
// thread waits in io_uring_enter holding its P in syscall state; when
// every P is held so, sysmon takes them back every 20 µs, wakes a thread
// to spin on each, and the ring thread coming back from the kernel must
// wait for a P (docs/nvmetcp.md, "Ring threads and Ps"). With two NVMe/TCP
// I/O queues in ring mode on 2 CPUs that cost the target a fifth of its
// CPU per I/O. One connection's ring thread (NBD from fio) leaves the
// default alone. Once raised, GOMAXPROCS is set explicitly (back to the
// default taken at start when the threads close), so the runtime stops
// following CPU-limit changes.
func engineGOMAXPROCS() {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if blockdev.BareScheme() == "aio" {
		runtime.GOMAXPROCS(max(8, runtime.NumCPU()))
		return
	}
	blockdev.SetThreadQueueHook(ringProcs(runtime.GOMAXPROCS(0), runtime.GOMAXPROCS))
}

// ringProcs returns the thread-queue hook that keeps GOMAXPROCS at
// max(base, open+1) through set (runtime.GOMAXPROCS; a parameter for
// tests).
func ringProcs(base int, set func(int) int) func(open int) {
	cur := base // guarded by the hook's caller (blockdev's lock)
	return func(open int) {
		if want := max(base, open+1); want != cur {
			cur = want
			set(want)
		}
	}
}
