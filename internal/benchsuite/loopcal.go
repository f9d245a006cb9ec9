package benchsuite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SysLoopCal is the loopback ceiling: the cheapest client and server we
// could write in C (scripts/loopcal: one thread each, the server on one
// io_uring for socket and disk, O_DIRECT, no protocol beyond a tag and a
// block number) over loopback TCP on the same file. No block server that
// runs in a second process on this machine, Kura's or a peer, can expect
// more; the report sets every server against it (docs/benchmarks.md, "The
// loopback ceiling").
const SysLoopCal = "loopcal"

func startLoopCal(ctx context.Context, env *Env) (*Target, error) {
	if env.LoopCal == "" {
		return nil, fmt.Errorf("%w: loopcal not built (scripts/bench.sh builds scripts/loopcal with gcc and liburing-dev)", ErrUnavailable)
	}
	srv, cli := filepath.Join(env.LoopCal, "loopcal-server"), filepath.Join(env.LoopCal, "loopcal-client")
	for _, b := range []string{srv, cli} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p, err := startProc(SysLoopCal, env.WorkDir, nil, srv, strconv.Itoa(port), env.File)
	if err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, p, fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second); err != nil {
		_ = p.stop()
		return nil, err
	}
	blocks := env.Size / 4096
	t := &Target{
		procs:    []*proc{p},
		Supports: func(w Workload) bool { return w.BS == 4096 && w.Random() },
		Detail:   "the loopback ceiling: scripts/loopcal's C client (one thread, blocking socket, one send per batch of completions) and server (one thread, one io_uring for socket and O_DIRECT disk I/O) on the same file; 4k random workloads only",
	}
	t.Measure = func(ctx context.Context, w Workload, runtime, ramp time.Duration) (Metrics, error) {
		op := "read"
		if w.Write() {
			op = "write"
		}
		out, err := runCmd(ctx, cli, strconv.Itoa(port), op, strconv.Itoa(w.QD),
			strconv.FormatFloat(ramp.Seconds(), 'f', 3, 64), strconv.FormatFloat(runtime.Seconds(), 'f', 3, 64),
			strconv.FormatInt(blocks, 10))
		if err != nil {
			return Metrics{}, err
		}
		return ParseLoopCal(out, runtime)
	}
	return t, nil
}

// ParseLoopCal reads loopcal-client's line
// "iops=N lat_mean_us=N client_cpu_us=N ios=N".
func ParseLoopCal(out []byte, runtime time.Duration) (Metrics, error) {
	var m Metrics
	seen := 0
	for _, f := range strings.Fields(string(out)) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return Metrics{}, fmt.Errorf("loopcal-client: %s: %w", f, err)
		}
		switch k {
		case "iops":
			m.IOPS = x
		case "lat_mean_us":
			m.LatMeanUs = x
		case "client_cpu_us":
			m.ClientCPUUsPerIO = x
		case "ios":
			m.IOs = int64(x)
		default:
			continue
		}
		seen++
	}
	if seen != 4 || m.IOs <= 0 || m.IOPS <= 0 {
		return Metrics{}, fmt.Errorf("loopcal-client output %q", trim(out, 200))
	}
	m.BWBytes = m.IOPS * 4096
	m.RuntimeMs = runtime.Milliseconds()
	return m, nil
}
