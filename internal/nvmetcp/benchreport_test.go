package nvmetcp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/perf"
)

// TestHelperTargetProcess is not a test: with KURA_NVMETCP_HELPER=1 it runs
// a target in this process (for TestBenchReport, which measures the
// target's CPU separately from the initiator's).
func TestHelperTargetProcess(t *testing.T) {
	if os.Getenv("KURA_NVMETCP_HELPER") != "1" {
		t.Skip("helper process for TestBenchReport")
	}
	ctx := context.Background()
	dev, err := blockdev.NewRegistry().Open(ctx, os.Getenv("KURA_HELPER_DEV"))
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	tg, err := NewTarget(TargetConfig{ListenAddr: "127.0.0.1:0", Logger: quietLogger()})
	if err == nil {
		err = tg.Start(ctx)
	}
	if err == nil {
		err = tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("bench"), Device: dev, AllowAnyHost: true})
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	if p := os.Getenv("KURA_HELPER_PROF"); p != "" {
		f, _ := os.Create(p)
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	fmt.Printf("READY %s\n", tg.Addr())
	io.Copy(io.Discard, os.Stdin) // parent closes stdin to stop us
	tg.Close()
	dev.Close()
}

type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startHelper(t *testing.T, devURI, prof string) *helper {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperTargetProcess$")
	cmd.Env = append(os.Environ(), "KURA_NVMETCP_HELPER=1", "KURA_HELPER_DEV="+devURI, "KURA_HELPER_PROF="+prof)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
			go io.Copy(io.Discard, stdout)
			return &helper{cmd: cmd, stdin: stdin, addr: a}
		}
		if strings.HasPrefix(sc.Text(), "ERROR") {
			t.Fatal(sc.Text())
		}
	}
	t.Fatal("helper exited before READY")
	return nil
}

func (h *helper) stop() { h.stdin.Close(); h.cmd.Wait() }

// cpuTime returns utime+stime of pid from /proc (10 ms resolution).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}

type benchRow struct {
	iops, clientUS, targetUS []float64
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// fioRun runs fio io_uring against the raw file and returns IOPS and CPU
// µs per I/O.
func fioRun(t *testing.T, path, rw string, dur time.Duration, size int64) (float64, float64) {
	out, err := exec.Command("fio", "--name=raw", "--filename="+path, "--ioengine=io_uring", "--direct=1",
		"--rw="+rw, "--bs=4k", "--iodepth=32", "--time_based", fmt.Sprintf("--runtime=%ds", int(dur.Seconds())),
		fmt.Sprintf("--size=%d", size), "--randrepeat=0", "--output-format=json").Output()
	if err != nil {
		t.Fatalf("fio: %v", err)
	}
	var r struct {
		Jobs []struct {
			Read, Write struct {
				IOPS     float64 `json:"iops"`
				TotalIOs float64 `json:"total_ios"`
			}
			UsrCPU  float64 `json:"usr_cpu"`
			SysCPU  float64 `json:"sys_cpu"`
			Runtime float64 `json:"job_runtime"`
		}
	}
	if err := json.Unmarshal(out[strings.IndexByte(string(out), '{'):], &r); err != nil || len(r.Jobs) == 0 {
		t.Fatalf("fio json: %v", err)
	}
	j := r.Jobs[0]
	iops, ios := j.Read.IOPS+j.Write.IOPS, j.Read.TotalIOs+j.Write.TotalIOs
	cpu := (j.UsrCPU + j.SysCPU) / 100 * j.Runtime / 1000 // seconds
	return iops, cpu * 1e6 / ios
}

// TestBenchReport produces the benchmark table of docs/nvmetcp.md
// (KURA_BENCH_DOC=1; optional KURA_BENCH_ROUNDS, KURA_BENCH_SECS,
// KURA_BENCH_PROF=dir for CPU profiles).
func TestBenchReport(t *testing.T) {
	if os.Getenv("KURA_BENCH_DOC") != "1" {
		t.Skip("set KURA_BENCH_DOC=1")
	}
	rounds, _ := strconv.Atoi(os.Getenv("KURA_BENCH_ROUNDS"))
	rounds = max(rounds, 3)
	secs, _ := strconv.Atoi(os.Getenv("KURA_BENCH_SECS"))
	dur := time.Duration(max(secs, 5)) * time.Second
	profDir := os.Getenv("KURA_BENCH_PROF")
	const size = 1 << 30
	const rng = 512 << 20
	dir := t.TempDir()
	path := filepath.Join(dir, "raw.img")
	f, err := os.Create(path)
	must(t, err)
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(i * 13)
	}
	for off := 0; off < size; off += len(buf) {
		_, err := f.Write(buf)
		must(t, err)
	}
	must(t, f.Sync())
	f.Close()

	backends := []struct{ name, uri string }{
		{"malloc", "malloc:///bench?size_mb=1024&blk_size=4096"},
		{"file (aio, O_DIRECT)", "aio://" + path + "?blk_size=4096"},
		{"file (uring, O_DIRECT)", "uring://" + path + "?blk_size=4096"},
	}
	if only := os.Getenv("KURA_BENCH_BACKENDS"); only != "" {
		// Comma-separated name prefixes, e.g. "file (uring" for one backend.
		backends = slices.DeleteFunc(backends, func(b struct{ name, uri string }) bool {
			for _, o := range strings.Split(only, ",") {
				if strings.HasPrefix(b.name, o) {
					return false
				}
			}
			return true
		})
	}
	type live struct {
		h *helper
		d *Device
	}
	lives := make([]live, len(backends))
	for i, b := range backends {
		prof := ""
		if profDir != "" {
			prof = filepath.Join(profDir, fmt.Sprintf("target-%d.prof", i))
		}
		h := startHelper(t, b.uri, prof)
		defer h.stop()
		d, err := Dial(context.Background(), Config{Addr: h.addr, SubNQN: NQNFor("bench"), IOQueues: 2, Logger: quietLogger()})
		must(t, err)
		defer d.Close()
		lives[i] = live{h, d}
	}
	// Malloc starts empty: fill the range once so reads move real data.
	for off := int64(0); len(backends) > 0 && backends[0].name == "malloc" && off < rng; off += int64(len(buf)) {
		_, err := lives[0].d.WriteAt(buf, off)
		must(t, err)
	}
	if profDir != "" {
		pf, _ := os.Create(filepath.Join(profDir, "client.prof"))
		pprof.StartCPUProfile(pf)
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	haveFio := false
	if _, err := exec.LookPath("fio"); err == nil {
		haveFio = true
	}
	rows := map[string]*benchRow{}
	get := func(k string) *benchRow {
		if rows[k] == nil {
			rows[k] = &benchRow{}
		}
		return rows[k]
	}
	for r := 0; r < rounds; r++ {
		for _, rw := range []string{"randread", "randwrite"} {
			mix := map[string]int{"randread": 100, "randwrite": 0}[rw]
			for i, b := range backends {
				l := lives[i]
				c0 := cpuTime(l.h.cmd.Process.Pid)
				res, err := perf.Run(context.Background(), l.d, perf.Options{RWMixRead: mix, BlockSize: 4096, QueueDepth: 32, Random: true, Range: rng, Duration: dur})
				c1 := cpuTime(l.h.cmd.Process.Pid)
				if err != nil || res.Errors > 0 {
					t.Fatalf("%s %s: %v %v", b.name, rw, err, res.FirstError)
				}
				row := get(b.name + "|" + rw)
				row.iops = append(row.iops, res.IOPS)
				row.clientUS = append(row.clientUS, float64(res.CPUPerIO.Nanoseconds())/1000)
				row.targetUS = append(row.targetUS, float64((c1-c0).Nanoseconds())/1000/float64(res.Ops))
				t.Logf("round %d %-24s %-9s %s; target CPU %.1f µs/IO", r, b.name, rw, res, row.targetUS[len(row.targetUS)-1])
			}
			if haveFio {
				iops, us := fioRun(t, path, rw, dur, rng)
				row := get("raw file, fio io_uring|" + rw)
				row.iops = append(row.iops, iops)
				row.clientUS = append(row.clientUS, us)
				t.Logf("round %d %-24s %-9s %.0f IOPS, %.1f µs CPU/IO", r, "fio", rw, iops, us)
			}
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "| path | workload | IOPS (median of %d) | client CPU µs/IO | target CPU µs/IO |\n|---|---|---|---|---|\n", rounds)
	names := []string{}
	for _, b := range backends {
		names = append(names, b.name)
	}
	names = append(names, "raw file, fio io_uring")
	for _, n := range names {
		for _, rw := range []string{"randread", "randwrite"} {
			row := rows[n+"|"+rw]
			if row == nil {
				continue
			}
			tgt := "–"
			if len(row.targetUS) > 0 {
				tgt = fmt.Sprintf("%.1f", median(row.targetUS))
			}
			fmt.Fprintf(&sb, "| %s | 4k %s QD32 | %.0f (%.0f–%.0f) | %.1f | %s |\n", n, rw, median(row.iops),
				slices.Min(row.iops), slices.Max(row.iops), median(row.clientUS), tgt)
		}
	}
	t.Log("\n" + sb.String())
	if out := os.Getenv("KURA_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(sb.String()), 0o644)
	}
}
