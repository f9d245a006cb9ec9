package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// DefaultEngine is the engine address client commands use by default.
const DefaultEngine = "127.0.0.1:10124"

// globals are the persistent flags shared by every command.
type globals struct {
	engine  string
	output  string
	timeout time.Duration
	stdout  io.Writer
	stderr  io.Writer
}

// Execute runs the kura command line and exits the process with its status.
func Execute() {
	os.Exit(Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// Run runs the command line with args and returns the exit status. Errors
// are printed as one line: "kura: <what went wrong>".
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "kura: %s\n", describe(err, g))
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "kura",
		Short: "Kura: a cloud-native block-storage data plane",
		Long: `Kura turns local disks into pools of replicas, mirrors them into volumes
(nexuses) and exports them over NVMe/TCP and NBD.

Daemons:
  kura up        all-in-one: an engine with a pool on a sparse file (try this first)
  kura engine    the storage engine of one node (gRPC API on 127.0.0.1:10124)

Engine clients (talk to --engine, env KURA_ENGINE):
  kura pool      create, import, export, destroy and list pools
  kura replica   create, destroy, resize, share and list replicas
  kura bdev      open block devices by URI and share them
  kura nexus     replicated volumes: create, publish, add/remove/fault children
  kura rebuild   watch and control child rebuilds
  kura snapshot  snapshots of replicas and nexuses, clones
  kura host      what the engine sees of its node

Tools:
  kura bench     measure a device by URI (nvmf://, aio://, uring://, malloc://)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	env := os.Getenv("KURA_ENGINE")
	if env == "" {
		env = DefaultEngine
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.engine, "engine", env, "engine gRPC address host:port (env KURA_ENGINE)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&g.timeout, "timeout", 60*time.Second, "timeout of each engine call")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if g.output != "table" && g.output != "json" {
			return usageError{fmt.Errorf("unknown output format %q (want table or json)", g.output)}
		}
		return nil
	}
	root.AddCommand(
		newEngineCmd(g),
		newUpCmd(g),
		newPoolCmd(g),
		newReplicaCmd(g),
		newBdevCmd(g),
		newHostCmd(g),
		newNexusCmd(g),
		newRebuildCmd(g),
		newSnapshotCmd(g),
		newBenchCmd(g),
	)
	return root
}

// usageError marks errors in how the command was called (exit status 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// exactArgs is cobra.ExactArgs with a message naming the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageError{fmt.Errorf("%s needs %d argument(s) (%s), got %d; see %q", cmd.CommandPath(), len(names), joinNames(names), len(args), cmd.CommandPath()+" --help")}
		}
		return nil
	}
}

func joinNames(names []string) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += " "
		}
		s += n
	}
	return s
}
