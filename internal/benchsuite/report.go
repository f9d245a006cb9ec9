package benchsuite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Median is the per-metric median of one system × workload over rounds.
type Median struct {
	System   string `json:"system"`
	Workload string `json:"workload"`
	N        int    `json:"n"`      // successful rounds
	Errors   int    `json:"errors"` // failed rounds
	Metrics
	IOPSMin float64 `json:"iops_min"`
	IOPSMax float64 `json:"iops_max"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ComputeMedians groups samples by system and workload (in first-seen
// order) and takes the median of every metric over the successful ones.
func ComputeMedians(samples []Sample) []Median {
	type key struct{ s, w string }
	var order []key
	groups := map[key][]Sample{}
	errs := map[key]int{}
	for _, s := range samples {
		k := key{s.System, s.Workload}
		if _, ok := groups[k]; !ok {
			if _, seen := errs[k]; !seen {
				order = append(order, k)
			}
		}
		if s.Err != "" {
			errs[k]++
			if _, ok := groups[k]; !ok {
				groups[k] = nil
			}
			continue
		}
		groups[k] = append(groups[k], s)
	}
	var out []Median
	for _, k := range order {
		g := groups[k]
		md := Median{System: k.s, Workload: k.w, N: len(g), Errors: errs[k]}
		if len(g) > 0 {
			col := func(f func(Metrics) float64) float64 {
				v := make([]float64, len(g))
				for i, s := range g {
					v[i] = f(s.Metrics)
				}
				return median(v)
			}
			md.IOPS = col(func(m Metrics) float64 { return m.IOPS })
			md.BWBytes = col(func(m Metrics) float64 { return m.BWBytes })
			md.LatMeanUs = col(func(m Metrics) float64 { return m.LatMeanUs })
			md.LatP50Us = col(func(m Metrics) float64 { return m.LatP50Us })
			md.LatP99Us = col(func(m Metrics) float64 { return m.LatP99Us })
			md.ClientCPUUsPerIO = col(func(m Metrics) float64 { return m.ClientCPUUsPerIO })
			md.ServerCPUUsPerIO = col(func(m Metrics) float64 { return m.ServerCPUUsPerIO })
			md.IOs = int64(col(func(m Metrics) float64 { return float64(m.IOs) }))
			md.RuntimeMs = int64(col(func(m Metrics) float64 { return float64(m.RuntimeMs) }))
			md.IOPSMin, md.IOPSMax = g[0].IOPS, g[0].IOPS
			for _, s := range g {
				md.IOPSMin = min(md.IOPSMin, s.IOPS)
				md.IOPSMax = max(md.IOPSMax, s.IOPS)
			}
		}
		out = append(out, md)
	}
	return out
}

// Lookup finds the median of system × workload with at least one
// successful round.
func Lookup(ms []Median, system, workload string) (Median, bool) {
	for _, m := range ms {
		if m.System == system && m.Workload == workload && m.N > 0 {
			return m, true
		}
	}
	return Median{}, false
}

// Ratio is IOPS(system)/IOPS(base) for one workload.
func Ratio(ms []Median, system, base, workload string) (float64, bool) {
	a, ok1 := Lookup(ms, system, workload)
	b, ok2 := Lookup(ms, base, workload)
	if !ok1 || !ok2 || b.IOPS == 0 {
		return 0, false
	}
	return a.IOPS / b.IOPS, true
}

// Target statuses.
const (
	StatusMet         = "met"
	StatusNotMet      = "NOT met"
	StatusNotMeasured = "not measured"
)

// TargetResult is one target of issue 6, evaluated on the medians.
type TargetResult struct {
	ID      string  `json:"id"`
	Text    string  `json:"text"`
	System  string  `json:"system"`
	Value   float64 `json:"value"`
	Goal    float64 `json:"goal"`
	Unit    string  `json:"unit"` // "x" (ratio, higher is better) or "us" (latency delta, lower is better)
	Status  string  `json:"status"`
	Counts  bool    `json:"counts"` // false: informative (not the system the target names)
	Comment string  `json:"comment,omitempty"`
}

type targetSpec struct {
	id, text string
	unit     string
	goal     float64
	eval     func(ms []Median, sys string) (float64, bool)
}

func ratioOf(base, w string) func([]Median, string) (float64, bool) {
	return func(ms []Median, sys string) (float64, bool) { return Ratio(ms, sys, base, w) }
}

func latDelta(base, w string) func([]Median, string) (float64, bool) {
	return func(ms []Median, sys string) (float64, bool) {
		a, ok1 := Lookup(ms, sys, w)
		b, ok2 := Lookup(ms, base, w)
		if !ok1 || !ok2 {
			return 0, false
		}
		return a.LatMeanUs - b.LatMeanUs, true
	}
}

var fileTargets = []targetSpec{
	{"nbd-read-vs-nbdkit", "4k randread QD32 ≥ 1.5× nbdkit file (cache=none)", "x", 1.5, ratioOf(SysNbdkitFile, WRandRead32)},
	{"nbd-write-vs-nbdkit", "4k randwrite QD32 ≥ 1.2× nbdkit file (cache=none)", "x", 1.2, ratioOf(SysNbdkitFile, WRandWrite32)},
	{"nbd-read-vs-qemu", "4k randread QD32 ≥ qemu-nbd (cache=none)", "x", 1.0, ratioOf(SysQemuNBD, WRandRead32)},
	{"nbd-write-vs-qemu", "4k randwrite QD32 ≥ qemu-nbd (cache=none)", "x", 1.0, ratioOf(SysQemuNBD, WRandWrite32)},
	{"nbd-read-vs-raw", "4k randread QD32 ≥ 0.8× raw file (fio io_uring, direct)", "x", 0.8, ratioOf(SysRaw, WRandRead32)},
	{"nbd-qd1-latency", "4k randread QD1 mean latency ≤ raw + 40 µs", "us", 40, latDelta(SysRaw, WRandRead1)},
}

var memTargets = []targetSpec{
	{"malloc-read-vs-nbdkit", "4k randread QD32 ≥ 1.1× nbdkit memory", "x", 1.1, ratioOf(SysNbdkitMemory, WRandRead32)},
	{"malloc-write-vs-nbdkit", "4k randwrite QD32 ≥ 1.1× nbdkit memory", "x", 1.1, ratioOf(SysNbdkitMemory, WRandWrite32)},
	{"malloc-read-qd1-latency", "4k randread QD1 mean latency ≤ nbdkit memory's", "us", 0, latDelta(SysNbdkitMemory, WRandRead1)},
	{"malloc-write-qd1-latency", "4k randwrite QD1 mean latency ≤ nbdkit memory's", "us", 0, latDelta(SysNbdkitMemory, WRandWrite1)},
}

var nvmfTargets = []targetSpec{
	{"nvmf-read-vs-raw", "NVMe/TCP 4k randread QD32 ≥ 0.8× raw", "x", 0.8, ratioOf(SysRaw, WRandRead32)},
	{"nvmf-write-vs-raw", "NVMe/TCP 4k randwrite QD32 ≥ 0.8× raw", "x", 0.8, ratioOf(SysRaw, WRandWrite32)},
}

// EvaluateTargets checks the targets of issue 6 against the medians. The
// NBD file targets count for kura-replica; the Kura server alone
// (kura-nbd-uring, kura-nbd-aio) and the nexus are evaluated too, marked
// informative.
func EvaluateTargets(ms []Median) []TargetResult {
	var out []TargetResult
	add := func(specs []targetSpec, sys string, counts bool) {
		for _, s := range specs {
			r := TargetResult{ID: s.id, Text: s.text, System: sys, Goal: s.goal, Unit: s.unit, Counts: counts}
			v, ok := s.eval(ms, sys)
			switch {
			case !ok:
				r.Status = StatusNotMeasured
			case s.unit == "x" && v >= s.goal, s.unit == "us" && v <= s.goal:
				r.Value, r.Status = v, StatusMet
			default:
				r.Value, r.Status = v, StatusNotMet
			}
			out = append(out, r)
		}
	}
	add(fileTargets, SysKuraReplica, true)
	for _, sys := range []string{SysKuraNexus1, SysKuraNexus3, SysKuraSrvUring, SysKuraSrvAIO} {
		if hasAny(ms, sys) {
			add(fileTargets, sys, false)
		}
	}
	add(memTargets, SysKuraMalloc, true)
	add(nvmfTargets, SysKuraNVMf, true)
	if hasAny(ms, SysLoopCal) {
		add(nvmfTargets, SysLoopCal, false) // the ceiling any two-process server meets
	}
	if hasAny(ms, SysKuraNVMfMem) {
		add(nvmfTargets, SysKuraNVMfMem, true) // issue 3: malloc share too
	}
	return out
}

func hasAny(ms []Median, sys string) bool {
	for _, m := range ms {
		if m.System == sys && m.N > 0 {
			return true
		}
	}
	return false
}

// WriteJSON writes the results as indented JSON.
func WriteJSON(path string, r *Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSON reads results written by WriteJSON.
func ReadJSON(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func baselinesFor(group string) []string {
	if group == GroupMemory {
		return []string{SysNbdkitMemory}
	}
	return []string{SysRaw, SysNbdkitFile, SysQemuNBD}
}

func groupOf(r *Results, sys string) string {
	for _, s := range r.Systems {
		if s.Name == sys {
			return s.Group
		}
	}
	return GroupFile
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }

// orDash is f1, or "–" for a value the load generator does not report
// (0: loopcal has no percentiles).
func orDash(v float64) string {
	if v == 0 {
		return "–"
	}
	return f1(v)
}

func kiops(v float64) string { return fmt.Sprintf("%.1f", v/1e3) }

func ratioCell(ms []Median, sys, base, w string) string {
	if sys == base {
		return "1.00"
	}
	r, ok := Ratio(ms, sys, base, w)
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f", r)
}

// Markdown renders the results: run facts, systems, a summary, one table
// per workload with ratios against the baselines, and the targets.
func Markdown(r *Results, plotRel string) string {
	var b strings.Builder
	m := r.Meta
	fmt.Fprintf(&b, "Run %s → %s UTC on %s (kernel %s, %d CPUs), %s. ",
		m.Start.Format("2006-01-02 15:04"), m.End.Format("15:04"), m.Host, m.Kernel, m.CPUs, m.Fio)
	fmt.Fprintf(&b, "Backing file %s (%d MiB, %s). %d round(s) × %gs (+%gs ramp) per job, systems alternated job by job in rotating order; numbers are medians over rounds. ",
		m.File, m.Size>>20, m.FileSystem, m.Rounds, m.RuntimeS, m.RampS)
	fmt.Fprintf(&b, "1-min load average during the jobs: min %.1f, median %.1f, max %.1f (2 cores; anything above ~1 means other work competed for the CPUs).", m.LoadMin, m.LoadMedian, m.LoadMax)
	if m.GitCommit != "" {
		fmt.Fprintf(&b, " Commit %s.", m.GitCommit)
	}
	if m.Note != "" {
		fmt.Fprintf(&b, " Note: %s.", m.Note)
	}
	b.WriteString("\n\n")

	b.WriteString("| system | what | measured |\n|---|---|---|\n")
	for _, s := range r.Systems {
		st := "yes"
		if !s.Available {
			st = strings.ReplaceAll(oneLine(s.Reason), "|", "/")
			if !strings.HasPrefix(st, ErrUnavailable.Error()) {
				st = "failed: " + st
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", s.Name, s.Desc, st)
	}
	b.WriteString("\n")

	// Summary: kIOPS per system for every workload.
	b.WriteString("**Summary** (median kIOPS; 128k columns in MB/s)\n\n| system |")
	for _, w := range r.Workloads {
		fmt.Fprintf(&b, " %s |", w.Name)
	}
	b.WriteString("\n|---|")
	for range r.Workloads {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, s := range r.Systems {
		if !hasAny(r.Medians, s.Name) {
			continue
		}
		fmt.Fprintf(&b, "| %s |", s.Name)
		for _, w := range r.Workloads {
			md, ok := Lookup(r.Medians, s.Name, w.Name)
			switch {
			case !ok:
				b.WriteString(" – |")
			case w.BS >= 64*1024:
				fmt.Fprintf(&b, " %.0f |", md.BWBytes/1e6)
			default:
				fmt.Fprintf(&b, " %s |", kiops(md.IOPS))
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	for _, w := range r.Workloads {
		fmt.Fprintf(&b, "**%s** (%s, bs %d KiB, QD %d)\n\n", w.Name, w.RW, w.BS/1024, w.QD)
		b.WriteString("| system | kIOPS | MB/s | mean lat µs | p99 µs | × raw | × nbdkit | × qemu-nbd | server CPU µs/IO | client CPU µs/IO | kIOPS min–max (n) |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, s := range r.Systems {
			md, ok := Lookup(r.Medians, s.Name, w.Name)
			if !ok {
				continue
			}
			var xraw, xnbdkit, xqemu string
			if groupOf(r, s.Name) == GroupMemory {
				xraw, xqemu = ratioCell(r.Medians, s.Name, SysRaw, w.Name), "–"
				xnbdkit = ratioCell(r.Medians, s.Name, SysNbdkitMemory, w.Name) + " (mem)"
			} else {
				xraw = ratioCell(r.Medians, s.Name, SysRaw, w.Name)
				xnbdkit = ratioCell(r.Medians, s.Name, SysNbdkitFile, w.Name)
				xqemu = ratioCell(r.Medians, s.Name, SysQemuNBD, w.Name)
			}
			srv := "–"
			if md.ServerCPUUsPerIO > 0 {
				srv = f1(md.ServerCPUUsPerIO)
			}
			cli := "–"
			if md.ClientCPUUsPerIO > 0 {
				cli = f1(md.ClientCPUUsPerIO)
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s–%s (%d",
				s.Name, kiops(md.IOPS), md.BWBytes/1e6, f1(md.LatMeanUs), orDash(md.LatP99Us), xraw, xnbdkit, xqemu, srv, cli,
				kiops(md.IOPSMin), kiops(md.IOPSMax), md.N)
			if md.Errors > 0 {
				fmt.Fprintf(&b, ", %d failed", md.Errors)
			}
			b.WriteString(") |\n")
		}
		b.WriteString("\n")
	}

	b.WriteString("**Targets of issue 6** (evaluated automatically on the medians above; rows marked *info* are not the system the target names)\n\n")
	b.WriteString("| target | system | measured | goal | status |\n|---|---|---:|---:|---|\n")
	for _, t := range r.Targets {
		val, goal := "–", ""
		switch t.Unit {
		case "x":
			goal = fmt.Sprintf("≥ %.2f×", t.Goal)
			if t.Status != StatusNotMeasured {
				val = fmt.Sprintf("%.2f×", t.Value)
			}
		case "us":
			goal = fmt.Sprintf("≤ %+.0f µs", t.Goal)
			if t.Status != StatusNotMeasured {
				val = fmt.Sprintf("%+.1f µs", t.Value)
			}
		}
		sys := t.System
		if !t.Counts {
			sys += " (info)"
		}
		st := t.Status
		if st == StatusMet {
			st = "**met**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", t.Text, sys, val, goal, st)
	}
	if plotRel != "" {
		fmt.Fprintf(&b, "\n![4k randread IOPS vs queue depth](%s)\n", plotRel)
	}
	return b.String()
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// Markers delimit the generated part of docs/benchmarks.md.
const (
	BeginMarker = "<!-- BEGIN GENERATED by kurabench: do not edit by hand -->"
	EndMarker   = "<!-- END GENERATED -->"
)

// SpliceDoc replaces the text between the markers in doc with gen (or
// appends a marked section when the markers are missing).
func SpliceDoc(doc, gen string) string {
	i := strings.Index(doc, BeginMarker)
	j := strings.Index(doc, EndMarker)
	block := BeginMarker + "\n" + gen + "\n" + EndMarker
	if i < 0 || j < i {
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		return doc + "\n" + block + "\n"
	}
	return doc[:i] + block + doc[j+len(EndMarker):]
}

// WriteDoc splices the generated Markdown into the document at path.
func WriteDoc(path, gen string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(path, []byte(SpliceDoc(string(old), gen)), 0o644)
}

// SweepSeries returns, per system with any sweep point, the (QD, kIOPS)
// points of the 4k randread sweep.
func SweepSeries(r *Results) (names []string, pts map[string][][2]float64) {
	pts = map[string][][2]float64{}
	for _, s := range r.Systems {
		for _, qd := range SweepQDs {
			md, ok := Lookup(r.Medians, s.Name, mk("randread", 4096, qd).Name)
			if ok {
				pts[s.Name] = append(pts[s.Name], [2]float64{float64(qd), md.IOPS / 1e3})
			}
		}
		if len(pts[s.Name]) > 0 {
			names = append(names, s.Name)
		}
	}
	return names, pts
}

// Plot draws IOPS vs queue depth (4k randread) per system into a PNG with
// gnuplot.
func Plot(ctx context.Context, r *Results, png string) error {
	gp, err := exec.LookPath("gnuplot")
	if err != nil {
		return fmt.Errorf("%w: gnuplot not installed", ErrUnavailable)
	}
	names, pts := SweepSeries(r)
	if len(names) == 0 {
		return fmt.Errorf("no 4k randread sweep measured")
	}
	dir, err := os.MkdirTemp("", "kurabench-plot")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var data bytes.Buffer
	for i, n := range names {
		if i > 0 {
			data.WriteString("\n\n")
		}
		for _, p := range pts[n] {
			fmt.Fprintf(&data, "%g %g\n", p[0], p[1])
		}
	}
	dat := filepath.Join(dir, "sweep.dat")
	if err := os.WriteFile(dat, data.Bytes(), 0o644); err != nil {
		return err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "set terminal pngcairo size 1000,620 font 'sans,11'\nset output '%s'\n", png)
	fmt.Fprintf(&s, "set title \"4k random read, IOPS vs queue depth (medians of %d round(s), %s)\"\n", r.Meta.Rounds, r.Meta.Start.Format("2006-01-02"))
	s.WriteString("set xlabel 'queue depth (fio iodepth)'\nset ylabel 'kIOPS'\nset logscale x 2\nset xtics (1,4,16,32)\n")
	s.WriteString("set key outside right top\nset grid\nset yrange [0:*]\n")
	s.WriteString("plot ")
	for i, n := range names {
		if i > 0 {
			s.WriteString(", ")
		}
		dt := 1
		if groupOf(r, n) == GroupMemory {
			dt = 2 // RAM-backed systems dashed
		}
		fmt.Fprintf(&s, "'%s' index %d with linespoints lw 2 pt %d dt %d lc rgb '%s' title '%s'",
			dat, i, 5+i%9, dt, plotColors[i%len(plotColors)], n)
	}
	s.WriteString("\n")
	if err := os.MkdirAll(filepath.Dir(png), 0o755); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, gp)
	cmd.Stdin = strings.NewReader(s.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %w: %s", err, out)
	}
	return nil
}

// plotColors gives each series its own colour (gnuplot's default cycle has 8).
var plotColors = []string{"#000000", "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00",
	"#a65628", "#f781bf", "#7f7f7f", "#17becf", "#bcbd22", "#1b3a6b", "#8c564b"}
