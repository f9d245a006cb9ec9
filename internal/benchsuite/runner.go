package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config selects what Run measures and where it writes.
type Config struct {
	Rounds     int           // ≥ 1
	Runtime    time.Duration // measured time per job
	Ramp       time.Duration // fio ramp_time (not measured)
	Only       string        // comma-separated system names ("" = all)
	Workloads  string        // comma-separated workload name patterns ("" = all)
	File       string        // backing file (created and filled if missing or of another size)
	Size       int64         // backing file size in bytes
	WorkDir    string        // logs, pool files, engine data
	Kura       string        // kura binary ("" = not built)
	KuraNBD    string        // kurabench-nbd binary ("" = not built)
	LoopCal    string        // directory of the loopcal binaries ("" = not built)
	PoolScheme string        // device scheme of engine pool disks ("" = bare path, the engine default)
	Fio        string        // fio binary ("" = look up "fio")
	Note       string        // free text recorded in the results (e.g. "quick")
	// AfterRound, when set, gets the results so far (medians and targets
	// computed) after each completed round, e.g. to save them.
	AfterRound func(r *Results)
	Logf       func(format string, args ...any)
}

// Sample is one measurement.
type Sample struct {
	System   string  `json:"system"`
	Workload string  `json:"workload"`
	Round    int     `json:"round"`
	Metrics          // zero when Err is set
	Load1    float64 `json:"load1"` // 1-min load average when the job started
	Err      string  `json:"error,omitempty"`
}

// SystemInfo says whether a system could be measured.
type SystemInfo struct {
	System
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// Meta describes the run.
type Meta struct {
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Host       string    `json:"host"`
	Kernel     string    `json:"kernel"`
	CPUs       int       `json:"cpus"`
	Fio        string    `json:"fio_version"`
	File       string    `json:"file"`
	FileSystem string    `json:"file_system"`
	Size       int64     `json:"size_bytes"`
	Rounds     int       `json:"rounds"`
	RuntimeS   float64   `json:"runtime_s"`
	RampS      float64   `json:"ramp_s"`
	Note       string    `json:"note,omitempty"`
	LoadMin    float64   `json:"load1_min"`
	LoadMedian float64   `json:"load1_median"`
	LoadMax    float64   `json:"load1_max"`
	GitCommit  string    `json:"git_commit,omitempty"`
}

// Results is everything a run produced (docs/benchmarks/results.json).
type Results struct {
	Meta      Meta           `json:"meta"`
	Systems   []SystemInfo   `json:"systems"`
	Workloads []Workload     `json:"workloads"`
	Samples   []Sample       `json:"samples"`
	Medians   []Median       `json:"medians"`
	Targets   []TargetResult `json:"targets"`
}

func (c *Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// SelectSystems returns the systems named in only (all when empty), in
// report order, or an error naming an unknown one.
func SelectSystems(only string) ([]System, error) {
	all := AllSystems()
	if strings.TrimSpace(only) == "" {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range splitList(only) {
		want[n] = true
	}
	var out []System
	for _, s := range all {
		if want[s.Name] {
			out = append(out, s)
			delete(want, s.Name)
		}
	}
	if len(want) > 0 {
		var names, unknown []string
		for _, s := range all {
			names = append(names, s.Name)
		}
		for n := range want {
			unknown = append(unknown, n)
		}
		sort.Strings(unknown)
		return nil, fmt.Errorf("unknown system(s) %s (known: %s)", strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	return out, nil
}

// Run measures the matrix. Systems that cannot start are reported as not
// available; the run fails only if nothing at all could be measured.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if cfg.Rounds < 1 {
		cfg.Rounds = 1
	}
	if cfg.Fio == "" {
		p, err := exec.LookPath("fio")
		if err != nil {
			return nil, fmt.Errorf("fio not installed: %w", err)
		}
		cfg.Fio = p
	}
	systems, err := SelectSystems(cfg.Only)
	if err != nil {
		return nil, err
	}
	workloads := FilterWorkloads(DefaultWorkloads(), cfg.Workloads)
	if len(workloads) == 0 {
		return nil, fmt.Errorf("no workload matches %q", cfg.Workloads)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, err
	}
	if err := prepareFile(cfg.File, cfg.Size, cfg.logf); err != nil {
		return nil, err
	}
	res := &Results{Workloads: workloads, Meta: meta(ctx, cfg)}
	files := []string{cfg.File}
	env := &Env{
		File: cfg.File, Size: cfg.Size, WorkDir: cfg.WorkDir, Kura: cfg.Kura, KuraNBD: cfg.KuraNBD, LoopCal: cfg.LoopCal, PoolScheme: cfg.PoolScheme, Logf: cfg.logf,
		ExtraFile: func(name string, size int64) (string, error) {
			p := filepath.Join(filepath.Dir(cfg.File), name)
			// Always a fresh file: an old one still holds a pool label.
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				return "", err
			}
			if err := prepareFile(p, size, cfg.logf); err != nil {
				return "", err
			}
			files = append(files, p)
			return p, nil
		},
	}
	dropCaches()

	// Start every system once; they idle while others are measured, so
	// each round can alternate systems job by job.
	targets := map[string]*Target{}
	defer func() {
		for _, s := range systems {
			if t := targets[s.Name]; t != nil {
				if err := t.stop(); err != nil {
					cfg.logf("stop %s: %v", s.Name, err)
				}
			}
		}
		if err := env.engine.stop(); err != nil {
			cfg.logf("stop engine: %v", err)
		}
	}()
	var up []System
	for _, s := range systems {
		info := SystemInfo{System: s}
		t, err := s.start(ctx, env)
		if err != nil {
			info.Reason = err.Error()
			if errors.Is(err, ErrUnavailable) {
				cfg.logf("%-15s %v", s.Name, err)
			} else {
				cfg.logf("%-15s failed to start: %v", s.Name, err)
			}
		} else {
			info.Available = true
			if t.Detail != "" {
				info.Desc = t.Detail
			}
			targets[s.Name] = t
			up = append(up, s)
			cfg.logf("%-15s ready", s.Name)
		}
		res.Systems = append(res.Systems, info)
	}
	if len(up) == 0 {
		return res, errors.New("no system could be started")
	}
	for i := 0; i < len(up); i++ {
		s := up[i]
		t := targets[s.Name]
		if !t.Prefill || (t.FioArgs == nil && t.fill == nil) {
			continue
		}
		start := time.Now()
		var err error
		if t.fill != nil {
			err = t.fill(ctx)
		} else {
			err = prefill(ctx, cfg, t)
		}
		if err != nil {
			cfg.logf("%-15s prefill failed, dropping it: %v", s.Name, err)
			for j := range res.Systems {
				if res.Systems[j].Name == s.Name {
					res.Systems[j].Available = false
					res.Systems[j].Reason = "prefill failed: " + err.Error()
				}
			}
			up = append(up[:i], up[i+1:]...)
			i--
			continue
		}
		cfg.logf("%-15s prefilled in %v", s.Name, time.Since(start).Round(100*time.Millisecond))
	}

	total := cfg.Rounds * len(workloads) * len(up)
	n := 0
	for r := 0; r < cfg.Rounds; r++ {
		for wi, w := range workloads {
			// Rotate the order each round and workload so no system always
			// runs first (or right after a write job).
			order := rotate(up, r+wi)
			for _, s := range order {
				if err := ctx.Err(); err != nil {
					return res, err
				}
				t := targets[s.Name]
				if t.Supports != nil && !t.Supports(w) {
					continue
				}
				n++
				if err := t.alive(); err != nil {
					res.Samples = append(res.Samples, Sample{System: s.Name, Workload: w.Name, Round: r + 1, Err: err.Error()})
					cfg.logf("[%d/%d] round %d %-15s %-18s ERROR %v", n, total, r+1, s.Name, w.Name, err)
					continue
				}
				quiesce(files)
				smp := Sample{System: s.Name, Workload: w.Name, Round: r + 1, Load1: load1()}
				m, err := measure(ctx, cfg, t, w)
				if err != nil {
					smp.Err = err.Error()
					cfg.logf("[%d/%d] round %d %-15s %-18s ERROR %v", n, total, r+1, s.Name, w.Name, err)
				} else {
					smp.Metrics = m
					cfg.logf("[%d/%d] round %d %-15s %-18s %8.1f kIOPS %8.1f MB/s lat %7.1f µs srvCPU %5.1f µs/IO load %.1f",
						n, total, r+1, s.Name, w.Name, m.IOPS/1e3, m.BWBytes/1e6, m.LatMeanUs, m.ServerCPUUsPerIO, smp.Load1)
				}
				res.Samples = append(res.Samples, smp)
			}
		}
		if cfg.AfterRound != nil && r+1 < cfg.Rounds {
			finish(res, r+1)
			cfg.AfterRound(res)
		}
	}
	finish(res, cfg.Rounds)
	return res, nil
}

// finish computes medians, targets and the load summary over the samples so
// far (rounds completed).
func finish(res *Results, rounds int) {
	res.Meta.End = time.Now().UTC()
	res.Meta.Rounds = rounds
	res.Medians = ComputeMedians(res.Samples)
	res.Targets = EvaluateTargets(res.Medians)
	var loads []float64
	for _, s := range res.Samples {
		loads = append(loads, s.Load1)
	}
	if len(loads) > 0 {
		sort.Float64s(loads)
		res.Meta.LoadMin, res.Meta.LoadMax = loads[0], loads[len(loads)-1]
		res.Meta.LoadMedian = median(loads)
	}
}

func rotate(s []System, k int) []System {
	if len(s) == 0 {
		return nil
	}
	k %= len(s)
	out := append([]System{}, s[k:]...)
	return append(out, s[:k]...)
}

// prefill writes the whole device once, sequentially, through t's front end.
func prefill(ctx context.Context, cfg Config, t *Target) error {
	args := append([]string{"--name=prefill", "--rw=write", "--bs=1M", "--iodepth=8", "--numjobs=1", "--output-format=json"}, t.FioArgs...)
	jctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	out, err := runCmd(jctx, append([]string{cfg.Fio}, args...)...)
	if err != nil {
		return err
	}
	m, err := ParseFio(out, true)
	if err != nil {
		return err
	}
	if m.BWBytes <= 0 {
		return errors.New("prefill wrote nothing")
	}
	return nil
}

// measure runs one job against t and adds the servers' CPU time per I/O,
// sampled over the measured window (after the ramp).
func measure(ctx context.Context, cfg Config, t *Target, w Workload) (Metrics, error) {
	jctx, cancel := context.WithTimeout(ctx, cfg.Runtime+cfg.Ramp+90*time.Second)
	defer cancel()
	pids := t.pids()
	cpu0 := map[int]time.Duration{}
	rampDone := make(chan struct{})
	go func() { // owned: ends after the ramp or when the job ends
		defer close(rampDone)
		select {
		case <-time.After(cfg.Ramp + 300*time.Millisecond):
		case <-jctx.Done():
			return
		}
		for _, p := range pids {
			if d, err := cpuTime(p); err == nil {
				cpu0[p] = d
			}
		}
	}()
	var m Metrics
	var err error
	if t.Measure != nil {
		m, err = t.Measure(jctx, w, cfg.Runtime, cfg.Ramp)
	} else {
		m, err = runFio(jctx, cfg, t, w)
	}
	cancel()
	<-rampDone
	if err != nil {
		return Metrics{}, err
	}
	var srv time.Duration
	for _, p := range pids {
		if c0, ok := cpu0[p]; ok {
			if d, err := cpuTime(p); err == nil {
				srv += d - c0
			}
		}
	}
	if len(cpu0) > 0 && m.IOs > 0 {
		// The window is a little shorter than the job's (300 ms after the
		// ramp), so scale by the fraction of I/Os inside it.
		window := float64(cfg.Runtime - 300*time.Millisecond)
		if window <= 0 {
			window = float64(cfg.Runtime)
		}
		ios := float64(m.IOs) * window / float64(cfg.Runtime)
		m.ServerCPUUsPerIO = float64(srv/time.Microsecond) / ios
	}
	return m, nil
}

func runFio(ctx context.Context, cfg Config, t *Target, w Workload) (Metrics, error) {
	args := []string{
		"--name=" + w.Name, "--rw=" + w.RW, "--bs=" + strconv.Itoa(w.BS), "--iodepth=" + strconv.Itoa(w.QD),
		"--numjobs=1", "--time_based", "--runtime=" + secs(cfg.Runtime), "--ramp_time=" + secs(cfg.Ramp),
		"--output-format=json",
	}
	if w.Random() {
		args = append(args, "--norandommap", "--randrepeat=0")
	}
	args = append(args, t.FioArgs...)
	cmd := exec.CommandContext(ctx, cfg.Fio, args...)
	var stderr, stdout strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		return Metrics{}, fmt.Errorf("fio: %w: %s", err, trim([]byte(stderr.String()), 500))
	}
	m, err := ParseFio([]byte(stdout.String()), w.Write())
	if err != nil {
		return Metrics{}, fmt.Errorf("%w (stderr: %s)", err, trim([]byte(stderr.String()), 300))
	}
	return m, nil
}

func secs(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	if s < 1 && d > 0 {
		s = 1
	}
	return strconv.Itoa(s)
}

// prepareFile makes path a fully written (not sparse, not unwritten-extent)
// file of size bytes, so reads really go to the disk. It checks O_DIRECT
// works on its file system (tmpfs has none).
func prepareFile(path string, size int64, logf func(string, ...any)) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if st, err := os.Stat(path); err == nil && st.Size() == size && st.Sys() != nil {
		if blocksOK(st, size) {
			return checkDirect(path)
		}
	}
	if logf != nil {
		logf("filling %s (%d MiB) with O_DIRECT writes", path, size>>20)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|unix.O_DIRECT, 0o644)
	if err != nil {
		return fmt.Errorf("open %s with O_DIRECT (tmpfs cannot; use a disk file system): %w", path, err)
	}
	defer f.Close()
	const chunk = 1 << 20
	buf, err := unix.Mmap(-1, 0, chunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(buf)
	for i := range buf {
		buf[i] = byte(i*7 + 1) // non-zero, so nothing can shortcut zero blocks
	}
	for off := int64(0); off < size; off += chunk {
		n := int64(chunk)
		if size-off < n {
			n = size - off
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("fill %s: %w", path, err)
		}
	}
	return f.Sync()
}

func blocksOK(st os.FileInfo, size int64) bool {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return s.Blocks*512 >= size
}

func checkDirect(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return fmt.Errorf("open %s with O_DIRECT (tmpfs cannot; use a disk file system): %w", path, err)
	}
	return unix.Close(fd)
}

// quiesce writes back dirty pages and drops the backing files' page cache
// so no measurement is served from, or pays for, another's cached data.
func quiesce(files []string) {
	unix.Sync()
	for _, p := range files {
		fd, err := unix.Open(p, unix.O_RDONLY, 0)
		if err != nil {
			continue
		}
		_ = unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
		unix.Close(fd)
	}
}

func dropCaches() {
	unix.Sync()
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0)
}

func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func meta(ctx context.Context, cfg Config) Meta {
	m := Meta{
		Start: time.Now().UTC(), CPUs: runtime.NumCPU(), File: cfg.File, Size: cfg.Size,
		Rounds: cfg.Rounds, RuntimeS: cfg.Runtime.Seconds(), RampS: cfg.Ramp.Seconds(), Note: cfg.Note,
	}
	m.Host, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if out, err := exec.CommandContext(ctx, cfg.Fio, "--version").Output(); err == nil {
		m.Fio = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, "df", "--output=fstype", filepath.Dir(cfg.File)).Output(); err == nil {
		f := strings.Fields(string(out))
		if len(f) > 0 {
			m.FileSystem = f[len(f)-1]
		}
	}
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.GitCommit = strings.TrimSpace(string(out))
	}
	return m
}
