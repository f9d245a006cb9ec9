// Command kurabench-nbd serves one Kura block device over NBD with nothing
// else of the engine around it: internal/blockdev opens the device by URI,
// internal/nbd serves it. The benchmark suite uses it to measure the NBD
// server alone (kura-nbd-aio, kura-nbd-uring, kura-malloc), and to profile
// it (--cpuprofile).
//
//	kurabench-nbd --uri uring:///var/tmp/kura-bench/disk.img --addr 127.0.0.1:10809 --export bench
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
	"syscall"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nbd"
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
	flag.Parse()
	if *uri == "" {
		return fmt.Errorf("--uri is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dev, err := blockdev.NewRegistry().Open(ctx, *uri)
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
