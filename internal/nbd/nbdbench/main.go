// Command nbdbench serves one device over NBD for benchmarks
// (scripts/nbd-bench.sh) until interrupted. It is a development tool; the
// product entry point is `kura engine --nbd`.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nbd"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:10809", "NBD listen address")
	export := flag.String("export", "disk", "export name")
	mallocMB := flag.Int64("malloc-mb", 0, "serve a malloc device of this many MiB")
	file := flag.String("file", "", "serve this file (O_DIRECT pread/pwrite)")
	uring := flag.Bool("uring", false, "with -file: use the io_uring device")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address")
	workers := flag.Int("workers", 0, "max workers per connection (0 = default)")
	noQueues := flag.Bool("noqueues", false, "keep connections on the device's shared ring (no ring mode)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var dev blockdev.Device
	var err error
	switch {
	case *mallocMB > 0:
		dev, err = blockdev.NewMalloc(*export, *mallocMB<<20, 512)
	case *file != "" && *uring:
		dev, err = blockdev.OpenUring(*file, blockdev.FileOptions{})
	case *file != "":
		dev, err = blockdev.OpenFile(*file, blockdev.FileOptions{})
	default:
		err = fmt.Errorf("need -malloc-mb or -file")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nbdbench:", err)
		os.Exit(2)
	}
	defer dev.Close()
	if *pprofAddr != "" {
		go func() { _ = http.ListenAndServe(*pprofAddr, nil) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := nbd.NewServer(nbd.Config{ListenAddr: *listen, Logger: log, MaxWorkers: *workers, NoQueues: *noQueues})
	if err := s.AddExport(*export, dev, nbd.ExportOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, "nbdbench:", err)
		os.Exit(1)
	}
	if err := s.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "nbdbench:", err)
		os.Exit(1)
	}
	<-ctx.Done()
	_ = s.Close()
}
