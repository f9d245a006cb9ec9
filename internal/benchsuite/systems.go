package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// ErrUnavailable marks a system whose prerequisites are missing (tool not
// installed, Kura component not built yet). The run goes on without it.
var ErrUnavailable = errors.New("not available")

// Groups of systems: each group has its own baseline for ratios.
const (
	GroupFile   = "file"   // on the backing file; baseline raw + nbdkit-file + qemu-nbd
	GroupMemory = "memory" // RAM-backed; baseline nbdkit-memory
)

// System names.
const (
	SysRaw          = "raw"
	SysNbdkitFile   = "nbdkit-file"
	SysQemuNBD      = "qemu-nbd"
	SysKuraSrvAIO   = "kura-nbd-aio"
	SysKuraSrvUring = "kura-nbd-uring"
	SysKuraReplica  = "kura-replica"
	SysKuraNexus1   = "kura-nexus1"
	SysKuraNexus3   = "kura-nexus3"
	SysKuraMalloc   = "kura-malloc"
	SysNbdkitMemory = "nbdkit-memory"
	SysKuraNVMf     = "kura-nvmf"
	SysKuraNVMfMem  = "kura-nvmf-malloc"
)

// Env is what systems need to start.
type Env struct {
	File    string // the shared backing file (raw, peers, Kura server alone)
	Size    int64  // its size in bytes
	WorkDir string // logs, engine data dirs, pool files
	Kura    string // path of the kura binary, "" when it is not built
	KuraNBD string // path of the kurabench-nbd server binary, "" when not built
	LoopCal string // directory of loopcal-server and loopcal-client, "" when not built
	// PoolScheme is the device scheme of the engine's pool disks ("aio",
	// "uring"); "" passes a bare path (the engine's default).
	PoolScheme string
	// ExtraFile creates (and fills) a fresh backing file of size bytes on
	// the same file system, for systems that cannot share File (an engine
	// pool writes a label into it).
	ExtraFile func(name string, size int64) (string, error)
	Logf      func(format string, args ...any)

	engine engine // shared by the engine-backed systems, started on first use
}

// System is one thing measured.
type System struct {
	Name  string `json:"name"`
	Desc  string `json:"desc"`
	Group string `json:"group"`
	start func(ctx context.Context, env *Env) (*Target, error)
}

// Target is a started system: how to point the load generator at it.
type Target struct {
	// FioArgs select fio's engine and target (the workload is added).
	FioArgs []string
	// Measure, when set, replaces fio (kura bench over NVMe/TCP).
	Measure func(ctx context.Context, w Workload, runtime, ramp time.Duration) (Metrics, error)
	// Supports filters workloads (nil: all).
	Supports func(w Workload) bool
	// Prefill asks the runner to write the whole device once through
	// its front end before measuring: Kura replicas and malloc devices (and
	// nbdkit memory) read never-written blocks as zeros without touching
	// any storage, which would make reads look faster than the disk.
	Prefill bool
	// Detail, when set, says how the system was actually set up (it
	// replaces the description in the report).
	Detail string
	// fill, when set, replaces fio for Prefill.
	fill func(ctx context.Context) error
	// Procs are the server processes (CPU accounting, stop).
	procs []*proc
	// cleanup runs after the processes stopped.
	cleanup []func() error
}

func (t *Target) pids() []int {
	var out []int
	for _, p := range t.procs {
		out = append(out, p.pid())
	}
	return out
}

func (t *Target) stop() error {
	var errs []error
	for i := len(t.procs) - 1; i >= 0; i-- {
		errs = append(errs, t.procs[i].stop())
	}
	for _, f := range t.cleanup {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}

func (t *Target) alive() error {
	for _, p := range t.procs {
		if p.exited() {
			return fmt.Errorf("%s exited: %v: %s", p.name, p.err, p.tail())
		}
	}
	return nil
}

func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s not installed (scripts/bench.sh installs it)", ErrUnavailable, name)
	}
	return p, nil
}

func nbdURI(port int, export string) string {
	return fmt.Sprintf("nbd://127.0.0.1:%d/%s", port, export)
}

// serveNBD starts argv (which must listen on the port it was given) and
// returns an NBD target.
func serveNBD(ctx context.Context, env *Env, name, export string, argv func(port int) []string) (*Target, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p, err := startProc(name, env.WorkDir, nil, argv(port)...)
	if err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, p, fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second); err != nil {
		_ = p.stop()
		return nil, err
	}
	return &Target{
		FioArgs: []string{"--ioengine=nbd", "--uri=" + nbdURI(port, export)},
		procs:   []*proc{p},
	}, nil
}

// AllSystems lists every system in the order of the report.
func AllSystems() []System {
	return []System{
		{Name: SysRaw, Group: GroupFile, Desc: "fio io_uring, O_DIRECT, on the backing file (no server)", start: startRaw},
		{Name: SysLoopCal, Group: GroupFile, Desc: "the loopback ceiling: the cheapest C client and server (scripts/loopcal) over loopback TCP on the same file, 4k random only", start: startLoopCal},
		{Name: SysKuraReplica, Group: GroupFile, Desc: "Kura engine: thick replica in a pool on a file, `kura replica share --protocol nbd`", start: startKuraEngine(engReplica)},
		{Name: SysKuraNexus1, Group: GroupFile, Desc: "Kura engine: nexus over 1 thick replica, `kura nexus publish --protocol nbd`", start: startKuraEngine(engNexus1)},
		{Name: SysKuraNexus3, Group: GroupFile, Desc: "Kura engine: nexus over 3 thick replicas (3 pool files), `kura nexus publish --protocol nbd`", start: startKuraEngine(engNexus3)},
		{Name: SysKuraSrvAIO, Group: GroupFile, Desc: "Kura NBD server alone (kurabench-nbd) on aio:// (O_DIRECT pread/pwrite) of the backing file", start: startKuraSrv("aio")},
		{Name: SysKuraSrvUring, Group: GroupFile, Desc: "Kura NBD server alone (kurabench-nbd) on uring:// (io_uring, O_DIRECT) of the backing file", start: startKuraSrv("uring")},
		{Name: SysNbdkitFile, Group: GroupFile, Desc: "nbdkit file plugin, cache=none, same file", start: startNbdkitFile},
		{Name: SysQemuNBD, Group: GroupFile, Desc: "qemu-nbd --cache=none --aio=io_uring, same file", start: startQemuNBD},
		{Name: SysKuraNVMf, Group: GroupFile, Desc: "kura bench (own NVMe/TCP initiator) against an engine replica shared over NVMe/TCP", start: startKuraEngine(engNVMf)},
		{Name: SysKuraMalloc, Group: GroupMemory, Desc: "Kura malloc bdev (RAM) shared over NBD by the engine (or, without an engine, by kurabench-nbd)", start: startKuraMalloc},
		{Name: SysNbdkitMemory, Group: GroupMemory, Desc: "nbdkit memory plugin (RAM)", start: startNbdkitMemory},
		{Name: SysKuraNVMfMem, Group: GroupMemory, Desc: "kura bench over NVMe/TCP against an engine malloc bdev (transport cost alone)", start: startKuraEngine(engNVMfMalloc)},
	}
}

func startRaw(ctx context.Context, env *Env) (*Target, error) {
	return &Target{FioArgs: []string{"--ioengine=io_uring", "--direct=1", "--filename=" + env.File, "--size=" + strconv.FormatInt(env.Size, 10)}}, nil
}

func startNbdkitFile(ctx context.Context, env *Env) (*Target, error) {
	bin, err := lookTool("nbdkit")
	if err != nil {
		return nil, err
	}
	return serveNBD(ctx, env, SysNbdkitFile, "", func(port int) []string {
		return []string{bin, "-f", "-i", "127.0.0.1", "-p", strconv.Itoa(port), "file", env.File, "cache=none"}
	})
}

func startNbdkitMemory(ctx context.Context, env *Env) (*Target, error) {
	bin, err := lookTool("nbdkit")
	if err != nil {
		return nil, err
	}
	t, err := serveNBD(ctx, env, SysNbdkitMemory, "", func(port int) []string {
		return []string{bin, "-f", "-i", "127.0.0.1", "-p", strconv.Itoa(port), "memory", strconv.FormatInt(env.Size, 10)}
	})
	if t != nil {
		t.Prefill = true
	}
	return t, err
}

func startQemuNBD(ctx context.Context, env *Env) (*Target, error) {
	bin, err := lookTool("qemu-nbd")
	if err != nil {
		return nil, err
	}
	return serveNBD(ctx, env, SysQemuNBD, "bench", func(port int) []string {
		return []string{bin, "--cache=none", "--aio=io_uring", "-t", "-f", "raw", "--shared=8",
			"-b", "127.0.0.1", "-p", strconv.Itoa(port), "-x", "bench", env.File}
	})
}

func kuraSrvBin(env *Env) (string, error) {
	if env.KuraNBD == "" {
		return "", fmt.Errorf("%w: kurabench-nbd not built (needs internal/nbd + internal/blockdev)", ErrUnavailable)
	}
	if _, err := os.Stat(env.KuraNBD); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return env.KuraNBD, nil
}

func startKuraSrv(scheme string) func(ctx context.Context, env *Env) (*Target, error) {
	return func(ctx context.Context, env *Env) (*Target, error) {
		bin, err := kuraSrvBin(env)
		if err != nil {
			return nil, err
		}
		uri := scheme + "://" + env.File
		name := SysKuraSrvAIO
		if scheme == "uring" {
			name = SysKuraSrvUring
		}
		t, err := serveNBD(ctx, env, name, "bench", func(port int) []string {
			return []string{bin, "--uri", uri, "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--export", "bench"}
		})
		if err != nil {
			return nil, unavailableIfUnknownScheme(err, scheme)
		}
		return t, nil
	}
}

func startKuraMalloc(ctx context.Context, env *Env) (*Target, error) {
	t, err := startKuraEngine(engMalloc)(ctx, env)
	if err == nil {
		t.Detail = "Kura engine: malloc bdev (RAM), `kura bdev share --protocol nbd`"
		return t, nil
	}
	bin, err2 := kuraSrvBin(env)
	if err2 != nil {
		return nil, fmt.Errorf("%w; %v", err, err2)
	}
	uri := fmt.Sprintf("malloc:///bench?size_mb=%d", env.Size>>20)
	t, err = serveNBD(ctx, env, SysKuraMalloc, "bench", func(port int) []string {
		return []string{bin, "--uri", uri, "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--export", "bench"}
	})
	if t != nil {
		t.Prefill = true
		t.Detail = "Kura NBD server alone (kurabench-nbd) on malloc:// (RAM); engine not available: " + oneLine(err.Error())
	}
	return t, err
}

// unavailableIfUnknownScheme turns "unknown URI scheme" (a device type not
// built yet) into ErrUnavailable.
func unavailableIfUnknownScheme(err error, scheme string) error {
	if containsAny(err.Error(), "unknown URI scheme", "unknown scheme") {
		return fmt.Errorf("%w: %s:// devices not built yet (%v)", ErrUnavailable, scheme, err)
	}
	return err
}
