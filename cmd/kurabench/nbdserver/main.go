// Command kurabench-nbd serves one Kura block device over NBD with nothing
// else of the engine around it: internal/blockdev opens the device by URI,
// internal/nbd serves it. The benchmark suite uses it to measure the NBD
// server alone (kura-nbd-aio, kura-nbd-uring, kura-malloc), and to profile
// it (--cpuprofile). With --nexus-child (repeatable) it serves a nexus
// (internal/nexus, in-memory info store) over those children instead: the
// nexus measured without the engine around it.
//
//	kurabench-nbd --uri uring:///var/tmp/kura-bench/disk.img --addr 127.0.0.1:10809 --export bench
//	kurabench-nbd --nexus-child aio:///a.img --nexus-child aio:///b.img --addr 127.0.0.1:10809
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nbd"
	"github.com/kura-io/kura/internal/nexus"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kurabench-nbd:", err)
		os.Exit(1)
	}
}

func run() error {
	uri := flag.String("uri", "", "device URI (aio:///path, uring:///path, malloc:///name?size_mb=N)")
	addr := flag.String("addr", "127.0.0.1:10809", "listen address")
	export := flag.String("export", "bench", "export name")
	workers := flag.Int("workers", 0, "nbd.Config.MaxWorkers (0: the server's default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here until SIGTERM/SIGINT")
	var children []string
	flag.Func("nexus-child", "serve a nexus over this child URI (repeatable) instead of --uri", func(s string) error {
		children = append(children, s)
		return nil
	})
	flag.Parse()
	if (*uri == "") == (len(children) == 0) {
		return fmt.Errorf("give --uri or --nexus-child (one or more)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var dev blockdev.Device
	var err error
	if len(children) > 0 {
		*uri = fmt.Sprintf("nexus of %d: %s", len(children), strings.Join(children, ", "))
		dev, err = nexus.New(ctx, nexus.Config{Name: *export, Children: children, Store: nexus.NewMemStore()})
	} else {
		dev, err = blockdev.NewRegistry().Open(ctx, *uri)
	}
	if err != nil {
		return err
	}
	defer dev.Close()
	srv := nbd.NewServer(nbd.Config{ListenAddr: *addr, MaxWorkers: *workers,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err := srv.AddExport(*export, dev, nbd.ExportOptions{Description: *uri}); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	if ta, ok := srv.Addr().(*net.TCPAddr); ok {
		fmt.Fprintf(os.Stderr, "serving %s as %s\n", *uri, nbd.URI(ta.IP.String(), ta.Port, *export))
	}
	<-ctx.Done()
	return srv.Close()
}
