package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kura-io/kura/internal/engine"
)

func newUpCmd(g *globals) *cobra.Command {
	var (
		d        daemonFlags
		poolSize string
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run an all-in-one engine with a pool on a sparse file (start here)",
		Long: `Run an engine with a pool named "default" on the sparse file DATA/pool0.img,
created on the first run and re-imported on the next. Prints the endpoints
and a few commands to try; Ctrl-C stops it cleanly.`,
		Example: "  kura up\n  kura up --data-dir ./kura-data --pool-size 10GiB",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := parseSize(poolSize, 1)
			if err != nil {
				return usageError{fmt.Errorf("--pool-size: %w", err)}
			}
			if size < 64<<20 {
				return usageError{fmt.Errorf("--pool-size %s: at least 64 MiB", poolSize)}
			}
			if err := os.MkdirAll(d.dataDir, 0o755); err != nil {
				return fmt.Errorf("data directory: %w", err)
			}
			img, err := filepath.Abs(filepath.Join(d.dataDir, "pool0.img"))
			if err != nil {
				return err
			}
			created, err := ensureSparseFile(img, int64(size))
			if err != nil {
				return err
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
			runErr := make(chan error, 1)
			go func() { runErr <- e.Run(ctx) }()
			select {
			case err := <-runErr:
				return err
			case <-e.Ready():
			}
			p, err := e.EnsurePool(ctx, "default", img, 0)
			if err != nil {
				stop()
				<-runErr
				return fmt.Errorf("default pool on %s: %w", img, err)
			}
			verb := "re-imported"
			if created {
				verb = "created"
			}
			addr := e.GRPCAddr().String()
			w := g.stdout
			fmt.Fprintf(w, "\nKura is up (%s pool %q on %s, %s).\n\n", verb, p.GetName(), img, humanSize(p.GetCapacity()))
			fmt.Fprintf(w, "  gRPC API   %s   (grpcurl -plaintext %s list)\n", addr, addr)
			fmt.Fprintf(w, "  NVMe/TCP   %s\n", d.nvmf)
			fmt.Fprintf(w, "  NBD        %s\n", d.nbd)
			fmt.Fprintf(w, "  data       %s\n\n", d.dataDir)
			engineFlag := ""
			if addr != DefaultEngine {
				engineFlag = " --engine " + addr
			}
			fmt.Fprintf(w, "Try, in another terminal:\n")
			fmt.Fprintf(w, "  kura%s pool list\n", engineFlag)
			fmt.Fprintf(w, "  kura%s replica create default vol1 --size=256MiB --thin\n", engineFlag)
			fmt.Fprintf(w, "  kura%s replica share default vol1 --allow-any-host  # NVMe/TCP: prints the nvmf:// URI\n", engineFlag)
			fmt.Fprintf(w, "  kura%s replica list\n", engineFlag)
			fmt.Fprintf(w, "  kura bench nvmf://%s/nqn.2019-05.io.kura:vol1 --time 5s\n", d.nvmf)
			fmt.Fprintf(w, "  kura%s host info\n\n", engineFlag)
			fmt.Fprintf(w, "Press Ctrl-C to stop.\n")
			err = <-runErr
			if err == nil || errors.Is(err, context.Canceled) {
				fmt.Fprintf(w, "Kura stopped; pool %q is closed and will be re-imported by the next \"kura up\".\n", p.GetName())
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&d.dataDir, "data-dir", defaultDataDir(), "directory for the engine state and the pool file")
	cmd.Flags().StringVar(&poolSize, "pool-size", "1GiB", "size of the pool file when it is created")
	d.add(cmd)
	return cmd
}

// ensureSparseFile creates a sparse file of size bytes unless it exists.
func ensureSparseFile(path string, size int64) (created bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pool file: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return false, fmt.Errorf("pool file: %w", err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("pool file: %w", err)
	}
	return true, nil
}
