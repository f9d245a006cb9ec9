// Command kurabench runs Kura's comparative benchmark suite (issue 6) and
// writes docs/benchmarks/results.json, the generated part of
// docs/benchmarks.md and docs/benchmarks/iops-vs-qd.png. It is a developer
// tool: scripts/bench.sh (make bench) installs fio, nbdkit, qemu-utils and
// gnuplot, builds kura and kurabench-nbd, and runs it.
//
//	kurabench run [--quick] [--rounds N] [--runtime S] [--only a,b] [--workloads p,q]
//	kurabench report [--json docs/benchmarks/results.json]   # re-render doc + plot
//	kurabench systems                                        # list system names
//	kurabench profile [--scheme uring] [--workload randread-4k-qd32]   # pprof of the NBD server
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kura-io/kura/internal/benchsuite"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "kurabench:", err)
		os.Exit(1)
	}
}

func usage() error {
	return errors.New("usage: kurabench run|report|systems [flags] (kurabench run -h for flags)")
}

func run(args []string) error {
	if len(args) == 0 {
		return usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:])
	case "report":
		return cmdReport(ctx, args[1:])
	case "profile":
		return cmdProfile(ctx, args[1:])
	case "systems":
		for _, s := range benchsuite.AllSystems() {
			fmt.Printf("%-16s %-7s %s\n", s.Name, s.Group, s.Desc)
		}
		return nil
	default:
		return usage()
	}
}

type outputs struct {
	json, doc, png string
}

func (o *outputs) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.json, "json", "docs/benchmarks/results.json", "results JSON")
	fs.StringVar(&o.doc, "doc", "docs/benchmarks.md", "Markdown document whose generated section is replaced")
	fs.StringVar(&o.png, "png", "docs/benchmarks/iops-vs-qd.png", "plot (IOPS vs queue depth)")
}

func cmdRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var (
		o         outputs
		quick     = fs.Bool("quick", false, "smoke test: 1 round, 2 s jobs, 0 ramp (results are not meaningful)")
		rounds    = fs.Int("rounds", 3, "rounds (medians are taken over rounds)")
		runtime   = fs.Duration("runtime", 6*time.Second, "measured time per job (plain numbers are seconds)")
		ramp      = fs.Duration("ramp", time.Second, "fio ramp time per job")
		only      = fs.String("only", "", "comma-separated systems to measure (default all; see `kurabench systems`)")
		workloads = fs.String("workloads", "", "comma-separated workload name patterns (e.g. qd32,128k)")
		file      = fs.String("file", "", "backing file (default /var/tmp/kura-bench/disk.img; must support O_DIRECT)")
		sizeMiB   = fs.Int64("size-mib", 1024, "backing file size in MiB")
		workDir   = fs.String("workdir", "", "logs, pool files, engine data (default next to the file)")
		kura      = fs.String("kura", "bin/kura", "kura binary (missing: engine systems not available)")
		kuraNBD   = fs.String("kura-nbd", "bin/kurabench-nbd", "kurabench-nbd binary (missing: Kura server-alone systems not available)")
		loopCal   = fs.String("loopcal", "bin", "directory of loopcal-server and loopcal-client (scripts/loopcal; missing: the loopback ceiling is not measured)")
		note      = fs.String("note", "", "free text recorded in the results")
		poolDev   = fs.String("pool-device", "", `device scheme for the engine's pool disks: "aio" or "uring" (default: a bare path, the engine's default)`)
		noDoc     = fs.Bool("no-doc", false, "write only the JSON (no Markdown, no plot)")
	)
	o.flags(fs)
	// Accept "--runtime 10" as seconds.
	args = secondsArgs(args, "runtime", "ramp")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *quick {
		*rounds = 1
		*runtime = 2 * time.Second
		*ramp = 0
		if *note == "" {
			*note = "--quick smoke run: 1 round, 2 s jobs; not a measurement"
		}
	}
	if *file == "" {
		*file = "/var/tmp/kura-bench/disk.img"
	}
	if *workDir == "" {
		*workDir = filepath.Join(filepath.Dir(*file), "work")
	}
	cfg := benchsuite.Config{
		Rounds: *rounds, Runtime: *runtime, Ramp: *ramp, Only: *only, Workloads: *workloads,
		File: *file, Size: *sizeMiB << 20, WorkDir: *workDir,
		Kura: existing(*kura), KuraNBD: existing(*kuraNBD), LoopCal: loopCalDir(*loopCal), Note: *note, PoolScheme: *poolDev,
		Logf: func(format string, a ...any) {
			fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
		},
	}
	// Save after every round, so an interrupted run still leaves results.
	cfg.AfterRound = func(r *benchsuite.Results) {
		if err := benchsuite.WriteJSON(o.json, r); err != nil {
			slog.Warn("saving partial results", "err", err)
			return
		}
		fmt.Fprintf(os.Stderr, "saved %d round(s) to %s\n", r.Meta.Rounds, o.json)
	}
	res, err := benchsuite.Run(ctx, cfg)
	if res == nil {
		return err
	}
	if err != nil {
		slog.Warn("run incomplete; writing what was measured", "err", err)
	}
	if werr := benchsuite.WriteJSON(o.json, res); werr != nil {
		return werr
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", o.json)
	if !*noDoc {
		if rerr := render(ctx, res, o); rerr != nil {
			return rerr
		}
	}
	return err
}

func cmdProfile(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	var (
		scheme   = fs.String("scheme", "uring", "device of kurabench-nbd: aio, uring or malloc")
		workload = fs.String("workload", benchsuite.WRandRead32, "workload name")
		runtime  = fs.Duration("runtime", 10*time.Second, "measured time")
		file     = fs.String("file", "/var/tmp/kura-bench/disk.img", "backing file")
		sizeMiB  = fs.Int64("size-mib", 1024, "backing file size in MiB")
		kuraNBD  = fs.String("kura-nbd", "bin/kurabench-nbd", "kurabench-nbd binary")
		out      = fs.String("out", "docs/benchmarks", "directory for the profile and its top table")
	)
	if err := fs.Parse(secondsArgs(args, "runtime")); err != nil {
		return err
	}
	ws := benchsuite.FilterWorkloads(benchsuite.DefaultWorkloads(), *workload)
	if len(ws) != 1 {
		return fmt.Errorf("--workload %q matches %d workloads", *workload, len(ws))
	}
	base := filepath.Join(*out, fmt.Sprintf("profile-kura-nbd-%s-%s", *scheme, ws[0].Name))
	prof := base + ".pprof"
	cfg := benchsuite.Config{Runtime: *runtime, Ramp: time.Second, File: *file, Size: *sizeMiB << 20,
		WorkDir: filepath.Join(filepath.Dir(*file), "work"), KuraNBD: existing(*kuraNBD),
		Logf: func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	m, err := benchsuite.Profile(ctx, cfg, *scheme, ws[0], prof)
	if err != nil {
		return err
	}
	top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=35", prof).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w: %s", err, top)
	}
	cum, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=35", prof).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w: %s", err, cum)
	}
	txt := fmt.Sprintf("kurabench-nbd on %s:// — %s, %.1f kIOPS, mean latency %.1f µs, server CPU %.1f µs/IO, fio CPU %.1f µs/IO (%s)\n\n== flat ==\n%s\n== cumulative ==\n%s",
		*scheme, ws[0].Name, m.IOPS/1e3, m.LatMeanUs, m.ServerCPUUsPerIO, m.ClientCPUUsPerIO, time.Now().UTC().Format(time.RFC3339), top, cum)
	if err := os.WriteFile(base+".txt", []byte(txt), 0o644); err != nil {
		return err
	}
	fmt.Print(txt)
	fmt.Fprintf(os.Stderr, "wrote %s and %s.txt\n", prof, base)
	return nil
}

func cmdReport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	var o outputs
	o.flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := benchsuite.ReadJSON(o.json)
	if err != nil {
		return err
	}
	res.Medians = benchsuite.ComputeMedians(res.Samples)
	res.Targets = benchsuite.EvaluateTargets(res.Medians)
	return render(ctx, res, o)
}

func render(ctx context.Context, res *benchsuite.Results, o outputs) error {
	plotRel := ""
	if err := benchsuite.Plot(ctx, res, o.png); err != nil {
		slog.Warn("no plot", "err", err)
	} else {
		fmt.Fprintf(os.Stderr, "wrote %s\n", o.png)
		if rel, err := filepath.Rel(filepath.Dir(o.doc), o.png); err == nil {
			plotRel = rel
		}
	}
	md := benchsuite.Markdown(res, plotRel)
	if err := benchsuite.WriteDoc(o.doc, md); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", o.doc)
	fmt.Println(md)
	return nil
}

func existing(p string) string {
	if p == "" {
		return ""
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// secondsArgs turns "--runtime 10" / "--runtime=10" into "10s" durations.
func secondsArgs(args []string, names ...string) []string {
	out := append([]string(nil), args...)
	isNum := func(s string) bool {
		if s == "" {
			return false
		}
		for _, c := range s {
			if (c < '0' || c > '9') && c != '.' {
				return false
			}
		}
		return true
	}
	for i, a := range out {
		for _, n := range names {
			for _, pre := range []string{"-" + n, "--" + n} {
				if a == pre && i+1 < len(out) && isNum(out[i+1]) {
					out[i+1] += "s"
				}
				if v, ok := strings.CutPrefix(a, pre+"="); ok && isNum(v) {
					out[i] = pre + "=" + v + "s"
				}
			}
		}
	}
	return out
}

// loopCalDir returns dir (absolute) when it holds loopcal-client, else "".
func loopCalDir(dir string) string {
	if existing(filepath.Join(dir, "loopcal-client")) == "" {
		return ""
	}
	return existing(dir)
}
