package benchsuite

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/kura-io/kura/internal/nvmetcp"
)

type engKind int

const (
	engReplica engKind = iota
	engNexus1
	engNexus3
	engNVMf
	engMalloc
	engNVMfMalloc
)

// kuraHas reports whether the kura CLI has the command path args (e.g.
// "nexus", "create"): its help must name it in the usage line.
func kuraHas(ctx context.Context, kura string, args ...string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kura, append(args, "--help")...).CombinedOutput()
	if err != nil {
		return false
	}
	return strings.Contains(string(out), "Usage:\n  kura "+strings.Join(args, " "))
}

// engine is the one `kura engine` process every engine-backed system
// shares; each system creates its own pools, replicas or nexus in it.
type engine struct {
	mu   sync.Mutex
	proc *proc
	grpc string
	err  error
	kura string
}

func (e *engine) get(ctx context.Context, env *Env) (*engine, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc != nil || e.err != nil {
		return e, e.err
	}
	e.err = e.start(ctx, env)
	return e, e.err
}

func (e *engine) start(ctx context.Context, env *Env) error {
	if env.Kura == "" {
		return fmt.Errorf("%w: kura binary not built", ErrUnavailable)
	}
	if !kuraHas(ctx, env.Kura, "engine") {
		return fmt.Errorf("%w: `kura engine` not built yet", ErrUnavailable)
	}
	e.kura = env.Kura
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return err
		}
		ports[i] = p
	}
	dataDir := filepath.Join(env.WorkDir, "engine")
	_ = os.RemoveAll(dataDir) // a fresh engine: no pools to re-import
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	e.grpc = fmt.Sprintf("127.0.0.1:%d", ports[0])
	p, err := startProc("kura-engine", env.WorkDir, nil, env.Kura, "engine", "--data-dir", dataDir,
		"--grpc", e.grpc, "--nvmf", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--nbd", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--log-level", "warn")
	if err != nil {
		return err
	}
	if err := waitTCP(ctx, p, e.grpc, 30*time.Second); err != nil {
		_ = p.stop()
		return err
	}
	e.proc = p
	return nil
}

func (e *engine) stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc == nil {
		return nil
	}
	return e.proc.stop()
}

// cli runs a kura client command against the engine and returns stdout.
func (e *engine) cli(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := runCmd(ctx, append([]string{e.kura, "--engine", e.grpc}, args...)...)
	return strings.TrimSpace(string(out)), err
}

var uriRE = regexp.MustCompile(`(nbd|nvmf)://[^\s"]+`)

func findURI(out, scheme string) (string, error) {
	for _, m := range uriRE.FindAllString(out, -1) {
		if strings.HasPrefix(m, scheme+"://") {
			return m, nil
		}
	}
	return "", fmt.Errorf("no %s:// URI in %q", scheme, trim([]byte(out), 300))
}

// pool creates pool name on a fresh, fully written file and a thick
// replica of env.Size in it.
func (e *engine) poolReplica(ctx context.Context, env *Env, pool, replica string) error {
	file, err := env.ExtraFile(pool+".img", env.Size+128<<20)
	if err != nil {
		return err
	}
	// By default a bare path: the engine's default file device (issue 6:
	// whichever of aio and uring is faster). PoolScheme forces one.
	disk := file
	if env.PoolScheme != "" {
		disk = env.PoolScheme + "://" + file
	}
	if _, err := e.cli(ctx, "pool", "create", pool, disk); err != nil {
		return err
	}
	if _, err := e.cli(ctx, "replica", "create", pool, replica, fmt.Sprintf("--size=%d", env.Size>>20)); err != nil {
		return err
	}
	return nil
}

func startKuraEngine(k engKind) func(ctx context.Context, env *Env) (*Target, error) {
	return func(ctx context.Context, env *Env) (*Target, error) {
		e, err := env.engine.get(ctx, env)
		if err != nil {
			if k == engNexus1 || k == engNexus3 {
				return startNexusAlone(ctx, env, k, err)
			}
			return nil, err
		}
		t := &Target{procs: []*proc{e.proc}, Prefill: true}
		switch k {
		case engReplica:
			if err := e.poolReplica(ctx, env, "bench-r", "r0"); err != nil {
				return nil, err
			}
			out, err := e.cli(ctx, "replica", "share", "bench-r", "r0", "--protocol", "nbd")
			if err != nil {
				return nil, err
			}
			uri, err := findURI(out, "nbd")
			if err != nil {
				return nil, err
			}
			t.FioArgs = []string{"--ioengine=nbd", "--uri=" + uri}
		case engMalloc:
			if _, err := e.cli(ctx, "bdev", "create", fmt.Sprintf("malloc:///benchmem?size_mb=%d", env.Size>>20), "--name", "benchmem"); err != nil {
				return nil, err
			}
			out, err := e.cli(ctx, "bdev", "share", "benchmem", "--protocol", "nbd")
			if err != nil {
				return nil, err
			}
			uri, err := findURI(out, "nbd")
			if err != nil {
				return nil, err
			}
			t.FioArgs = []string{"--ioengine=nbd", "--uri=" + uri}
		case engNexus1, engNexus3:
			if !kuraHas(ctx, e.kura, "nexus", "create") || !kuraHas(ctx, e.kura, "nexus", "publish") {
				return startNexusAlone(ctx, env, k, fmt.Errorf("%w: `kura nexus create/publish` not built yet", ErrUnavailable))
			}
			return startNexus(ctx, env, e, t, k)
		case engNVMf, engNVMfMalloc:
			return startNVMf(ctx, env, e, t, k == engNVMfMalloc)
		}
		return t, nil
	}
}

func nexusChildren(k engKind) int {
	if k == engNexus3 {
		return 3
	}
	return 1
}

// startNexusAlone serves a nexus over fresh files with kurabench-nbd when
// the engine cannot (yet) create one: the nexus and NBD server measured
// without pools and engine around them.
func startNexusAlone(ctx context.Context, env *Env, k engKind, why error) (*Target, error) {
	bin, err := kuraSrvBin(env)
	if err != nil {
		return nil, fmt.Errorf("%v; %w", why, err)
	}
	n := nexusChildren(k)
	name := fmt.Sprintf("kura-nexus%d", n)
	args := []string{bin}
	var files []string
	for i := 0; i < n; i++ {
		f, err := env.ExtraFile(fmt.Sprintf("nexus%d-child%d.img", n, i), env.Size)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
		args = append(args, "--nexus-child", f) // a bare path: the default file device
	}
	t, err := serveNBD(ctx, env, name, "bench", func(port int) []string {
		return append(args, "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--export", "bench")
	})
	if err != nil {
		return nil, err
	}
	t.Prefill = true
	t.Detail = fmt.Sprintf("nexus (internal/nexus) over %d file(s) (bare paths: the default file device), served by kurabench-nbd — the engine's nexus is not available (%s)",
		n, oneLine(why.Error()))
	return t, nil
}

// startNexus builds a nexus in the engine over 1 or 3 thick replicas, each
// in its own pool on its own file, and publishes it over NBD.
func startNexus(ctx context.Context, env *Env, e *engine, t *Target, k engKind) (*Target, error) {
	n := nexusChildren(k)
	name := fmt.Sprintf("benchx%d", n)
	var children []string
	for i := 0; i < n; i++ {
		pool, rep := fmt.Sprintf("bench-x%d-%d", n, i), fmt.Sprintf("x%dc%d", n, i)
		if err := e.poolReplica(ctx, env, pool, rep); err != nil {
			return nil, err
		}
		out, err := e.cli(ctx, "-o", "json", "replica", "list", pool)
		if err != nil {
			return nil, err
		}
		var list struct {
			Replicas []struct {
				Name string `json:"name"`
				URI  string `json:"uri"`
			} `json:"replicas"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return nil, fmt.Errorf("replica list: %w: %s", err, trim([]byte(out), 200))
		}
		uri := "bdev:///" + rep
		for _, r := range list.Replicas {
			if r.Name == rep && r.URI != "" {
				uri = r.URI
			}
		}
		children = append(children, uri)
	}
	args := append([]string{"nexus", "create", name}, children...)
	args = append(args, fmt.Sprintf("--size=%d", env.Size>>20))
	if _, err := e.cli(ctx, args...); err != nil {
		return nil, err
	}
	out, err := e.cli(ctx, "nexus", "publish", name, "--protocol", "nbd")
	if err != nil {
		return nil, err
	}
	uri, err := findURI(out, "nbd")
	if err != nil {
		return nil, err
	}
	t.FioArgs = []string{"--ioengine=nbd", "--uri=" + uri}
	return t, nil
}

func startNVMf(ctx context.Context, env *Env, e *engine, t *Target, malloc bool) (*Target, error) {
	var out string
	var err error
	if malloc {
		if _, err := e.cli(ctx, "bdev", "create", fmt.Sprintf("malloc:///benchmemn?size_mb=%d", env.Size>>20), "--name", "benchmemn"); err != nil {
			return nil, err
		}
		out, err = e.cli(ctx, "bdev", "share", "benchmemn", "--protocol", "nvmf", "--allow-any-host")
	} else {
		if err := e.poolReplica(ctx, env, "bench-n", "n0"); err != nil {
			return nil, err
		}
		out, err = e.cli(ctx, "replica", "share", "bench-n", "n0", "--protocol", "nvmf", "--allow-any-host")
	}
	if err != nil {
		return nil, err
	}
	uri, err := findURI(out, "nvmf")
	if err != nil {
		return nil, err
	}
	if kuraHas(ctx, e.kura, "bench") {
		return kuraBenchTarget(ctx, env, e, t, uri)
	}
	dev, err := nvmetcp.DialURI(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", uri, err)
	}
	t.cleanup = append(t.cleanup, dev.Close)
	t.fill = func(ctx context.Context) error { return fillDevice(ctx, dev) }
	t.Measure = func(ctx context.Context, w Workload, runtime, ramp time.Duration) (Metrics, error) {
		return GoLoad(ctx, dev, w, runtime, ramp)
	}
	t.Detail = "engine share over NVMe/TCP (" + uri + "), driven by kurabench's Go load generator over Kura's NVMe/TCP initiator (internal/nvmetcp; one goroutine per queue slot) because `kura bench` is not available"
	return t, nil
}

// kuraBenchTarget measures with `kura bench URI -o json` (Kura's NVMe/TCP
// initiator and load generator, internal/perf). The device is written once
// beforehand through the same initiator.
func kuraBenchTarget(ctx context.Context, env *Env, e *engine, t *Target, uri string) (*Target, error) {
	t.fill = func(ctx context.Context) error {
		dev, err := nvmetcp.DialURI(ctx, uri)
		if err != nil {
			return fmt.Errorf("dial %s: %w", uri, err)
		}
		defer dev.Close()
		return fillDevice(ctx, dev)
	}
	t.Measure = func(ctx context.Context, w Workload, runtime, ramp time.Duration) (Metrics, error) {
		out, err := runCmd(ctx, e.kura, "-o", "json", "bench", uri, "--rw", w.RW, "--bs", fmt.Sprint(w.BS),
			"--qd", fmt.Sprint(w.QD), "--time", runtime.String())
		if err != nil {
			return Metrics{}, err
		}
		return ParseKuraBench(out)
	}
	t.Detail = "engine share over NVMe/TCP, driven by `kura bench` (Kura's NVMe/TCP initiator, 2 I/O queues, completions start the next I/O asynchronously; internal/perf)"
	return t, nil
}

// ParseKuraBench reads the JSON of `kura bench -o json`.
func ParseKuraBench(out []byte) (Metrics, error) {
	var r struct {
		Ops       int64   `json:"ops"`
		Errors    int64   `json:"errors"`
		ElapsedNs int64   `json:"elapsed_ns"`
		IOPS      float64 `json:"iops"`
		MBps      float64 `json:"mbps"`
		LatMean   int64   `json:"lat_mean_ns"`
		LatP50    int64   `json:"lat_p50_ns"`
		LatP99    int64   `json:"lat_p99_ns"`
		CPUPerIO  int64   `json:"cpu_per_io_ns"`
	}
	i := strings.IndexByte(string(out), '{')
	if i < 0 {
		return Metrics{}, fmt.Errorf("no JSON in kura bench output %q", trim(out, 200))
	}
	if err := json.Unmarshal(out[i:], &r); err != nil {
		return Metrics{}, fmt.Errorf("kura bench output: %w", err)
	}
	if r.Errors > 0 {
		return Metrics{}, fmt.Errorf("kura bench: %d I/O errors", r.Errors)
	}
	if r.Ops == 0 {
		return Metrics{}, fmt.Errorf("kura bench did no I/O")
	}
	return Metrics{
		IOPS: r.IOPS, BWBytes: r.MBps * 1e6, LatMeanUs: float64(r.LatMean) / 1e3, LatP50Us: float64(r.LatP50) / 1e3,
		LatP99Us: float64(r.LatP99) / 1e3, IOs: r.Ops, RuntimeMs: r.ElapsedNs / 1e6, ClientCPUUsPerIO: float64(r.CPUPerIO) / 1e3,
	}, nil
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}
