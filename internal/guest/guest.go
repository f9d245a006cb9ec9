// Package guest boots a small Linux guest (the Debian cloud kernel plus an
// initramfs built by scripts/guest-build.sh) under QEMU TCG so that tests can
// drive the real Linux kernel NVMe/TCP initiator, the kernel nvmet-tcp target
// and the kernel nbd client. The host kernel of the test machines has none of
// these, so the guest is the only way to test Kura against them.
//
// A test passes a shell script; the guest runs it as /test.sh (with `sh -e`,
// after a prelude that defines check/must/wait_for, see prelude.sh), prints
// "KURA-GUEST-RESULT: PASS rc=0" or "... FAIL rc=N" on the serial console and
// powers off. Run boots, waits and parses the marker; Start runs a guest in
// the background (for example a kernel nvmet-tcp target exposed to the host
// with HostFwd) and returns a handle.
//
// Networking is QEMU user mode with restrict=on: the guest reaches nothing but
// the host ports listed in Options.HostPorts, at $KURA_HOST:PORT
// (10.0.2.100:PORT inside the guest). QEMU always runs with TCG
// (-accel tcg,thread=multi), never KVM.
package guest

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/testtool"
)

//go:embed prelude.sh
var prelude string

// Errors returned by Run and Guest methods.
var (
	// ErrFailed means the guest script finished with a nonzero status.
	ErrFailed = errors.New("guest: script failed")
	// ErrNoResult means QEMU exited (or was killed) without printing a result marker.
	ErrNoResult = errors.New("guest: no result marker")
	// ErrTimeout means the guest did not finish in time.
	ErrTimeout = errors.New("guest: timed out")
)

// Result markers printed by the guest's /init and the prelude.
const (
	resultMarker = "KURA-GUEST-RESULT: "
	checkMarker  = "KURA-CHECK: "
)

// GuestHost is the address at which the guest reaches the host ports listed
// in Options.HostPorts (also exported to the script as $KURA_HOST).
const GuestHost = "10.0.2.100"

// GuestIP is the guest's own address on its user-mode network.
const GuestIP = "10.0.2.15"

// Fwd exposes a guest TCP port on the host's 127.0.0.1.
type Fwd struct {
	HostPort  int // 0: pick a free port (see Guest.HostPort)
	GuestPort int
}

// Options configure one guest boot.
type Options struct {
	// Name labels log lines (default: the test name).
	Name string
	// Script is the body of /test.sh. It runs under `sh -e` after the prelude;
	// it should end normally (the harness appends kura_finish, which fails the
	// run when any check failed).
	Script string
	// Env is exported to the script (written to /env.sh).
	Env map[string]string
	// ExtraFiles are added to the guest's root (path → contents, mode 0755).
	ExtraFiles map[string][]byte
	// HostPorts are host 127.0.0.1 TCP ports the guest may reach, as
	// $KURA_HOST:PORT (10.0.2.100:PORT) inside the guest.
	HostPorts []int
	// HostFwd exposes guest ports on the host.
	HostFwd []Fwd
	// Timeout bounds the whole boot (default 3 minutes; background guests: 10 minutes).
	Timeout time.Duration
	// KernelArgs are appended to the kernel command line.
	KernelArgs string
	// MemoryMB (default 1024) and CPUs (default 2) size the guest.
	MemoryMB, CPUs int
	// Verbose streams every console line to t.Log as it arrives (also
	// enabled by KURA_GUEST_VERBOSE=1). Otherwise the console is logged only
	// on failure.
	Verbose bool
}

// Image is a built guest: kernel and base initramfs.
type Image struct {
	Dir     string
	Kernel  string
	Initrd  string
	BuildIn time.Duration // time spent in scripts/guest-build.sh by this process
}

var (
	imageMu  sync.Mutex
	imageVal *Image
	imageErr error
)

// RepoRoot returns the module root (the directory holding go.mod).
func RepoRoot() (string, error) {
	if r := os.Getenv("KURA_ROOT"); r != "" {
		return r, nil
	}
	_, file, _, ok := runtime.Caller(0)
	if ok {
		r := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
		if _, err := os.Stat(filepath.Join(r, "go.mod")); err == nil {
			return r, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("guest: go.mod not found")
		}
	}
}

// EnsureImage builds (or reuses) the guest image. It skips the test when QEMU
// is not installed, unless KURA_REQUIRE_TOOLS=1, in which case it fails; a
// build failure fails the test.
func EnsureImage(t testing.TB) *Image {
	t.Helper()
	testtool.Require(t, "qemu-system-x86_64")
	imageMu.Lock()
	defer imageMu.Unlock()
	if imageVal == nil && imageErr == nil {
		imageVal, imageErr = buildImage()
	}
	if imageErr != nil {
		t.Fatalf("guest image: %v", imageErr)
	}
	return imageVal
}

func buildImage() (*Image, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "guest-build.sh"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("scripts/guest-build.sh: %w\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	img := &Image{
		Dir:     dir,
		Kernel:  filepath.Join(dir, "vmlinuz"),
		Initrd:  filepath.Join(dir, "initrd.cpio"),
		BuildIn: time.Since(start),
	}
	for _, f := range []string{img.Kernel, img.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("guest image incomplete: %w", err)
		}
	}
	return img, nil
}

// Guest is a running (or finished) guest.
type Guest struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	tmpDir  string
	hostFwd map[int]int // guest port → host port
	started time.Time
	verbose bool

	mu      sync.Mutex
	lines   []string
	notify  chan struct{} // closed and replaced on every new line
	exited  chan struct{} // closed when QEMU has exited and output is drained
	waitErr error
	timer   *time.Timer
	timeout bool
	stopped bool
}

// Run boots a guest, runs opts.Script and returns the console output. The
// error is nil only when the guest printed "KURA-GUEST-RESULT: PASS". On
// error the console output is written to t.Log.
func Run(ctx context.Context, t testing.TB, opts Options) (string, error) {
	t.Helper()
	g, err := Start(ctx, t, opts)
	if err != nil {
		return "", err
	}
	return g.Wait(ctx)
}

// Start boots a guest in the background. The guest is killed at test cleanup
// if it is still running. Use WaitFor to wait for a marker (e.g. "READY")
// printed by the script, Wait for the result, Stop to kill it.
func Start(ctx context.Context, t testing.TB, opts Options) (*Guest, error) {
	t.Helper()
	img := EnsureImage(t)
	if len(opts.HostPorts) > 0 {
		testtool.Require(t, "socat")
	}
	if opts.Timeout == 0 {
		opts.Timeout = 3 * time.Minute
	}
	if opts.MemoryMB == 0 {
		opts.MemoryMB = 1024
	}
	if opts.CPUs == 0 {
		opts.CPUs = 2
	}
	if opts.Name == "" {
		opts.Name = t.Name()
	}
	// Host ports for HostFwd are chosen once, so a retried boot keeps them.
	fwd := map[int]int{}
	for _, f := range opts.HostFwd {
		hp := f.HostPort
		if hp == 0 {
			var err error
			if hp, err = freePort(); err != nil {
				return nil, err
			}
		}
		fwd[f.GuestPort] = hp
	}
	// A TCG guest starved of CPU can fail before /init runs (e.g. the
	// kernel's timer checks); that is never the code under test, so a boot
	// that dies or stalls before the "booted" line is retried once.
	for attempt := 1; ; attempt++ {
		g, err := launch(t, img, opts, fwd)
		if err != nil {
			return nil, err
		}
		berr := g.waitBooted(ctx, bootTimeout)
		if berr == nil {
			g.logf("booted")
			return g, nil
		}
		g.kill()
		<-g.exited
		if attempt == 2 || ctx.Err() != nil {
			g.logConsole()
			return nil, fmt.Errorf("guest %s did not boot: %w", g.name, berr)
		}
		g.logf("boot failed (%v), retrying; console:\n%s", berr, g.Output())
	}
}

// bootTimeout bounds the time from starting QEMU to /init's "booted" line.
const bootTimeout = 150 * time.Second

const bootedMarker = "KURA-GUEST: booted"

func (g *Guest) waitBooted(ctx context.Context, d time.Duration) error {
	bctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	seen := 0
	for {
		g.mu.Lock()
		for ; seen < len(g.lines); seen++ {
			if strings.Contains(g.lines[seen], bootedMarker) {
				g.mu.Unlock()
				return nil
			}
		}
		ch := g.notify
		g.mu.Unlock()
		select {
		case <-g.exited:
			g.mu.Lock()
			ok := false
			for ; seen < len(g.lines); seen++ {
				ok = ok || strings.Contains(g.lines[seen], bootedMarker)
			}
			g.mu.Unlock()
			if ok {
				return nil
			}
			return fmt.Errorf("qemu exited before boot completed: %w", ErrNoResult)
		case <-bctx.Done():
			return fmt.Errorf("no %q after %v: %w", bootedMarker, d, bctx.Err())
		case <-ch:
		}
	}
}

func launch(t testing.TB, img *Image, opts Options, fwd map[int]int) (*Guest, error) {
	t.Helper()
	tmp, err := os.MkdirTemp("", "kura-guest-")
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(tmp, "initrd")
	if err := writeInitrd(initrd, img.Initrd, opts); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}

	g := &Guest{
		t:       t,
		name:    opts.Name,
		tmpDir:  tmp,
		hostFwd: map[int]int{},
		notify:  make(chan struct{}),
		exited:  make(chan struct{}),
		verbose: opts.Verbose || os.Getenv("KURA_GUEST_VERBOSE") == "1",
	}
	netdev := "user,id=n0,ipv6=off,restrict=on"
	for _, p := range opts.HostPorts {
		netdev += fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:socat - TCP:127.0.0.1:%d", GuestHost, p, p)
	}
	for _, f := range opts.HostFwd {
		hp := fwd[f.GuestPort]
		g.hostFwd[f.GuestPort] = hp
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-%s:%d", hp, GuestIP, f.GuestPort)
	}
	appendArgs := "console=ttyS0 quiet panic=-1 no_timer_check nvme_core.admin_timeout=5 " + opts.KernelArgs
	args := []string{
		"-accel", "tcg,thread=multi", "-cpu", "max",
		"-m", strconv.Itoa(opts.MemoryMB), "-smp", strconv.Itoa(opts.CPUs),
		"-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio",
		"-kernel", img.Kernel, "-initrd", initrd,
		"-append", strings.TrimSpace(appendArgs),
		"-netdev", netdev,
		"-device", "virtio-net-pci,netdev=n0,romfile=",
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	g.cmd = cmd
	g.started = time.Now()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("guest: start qemu: %w", err)
	}
	pw.Close()
	g.logf("qemu started (pid %d, timeout %v, hostfwd %v)", cmd.Process.Pid, opts.Timeout, g.hostFwd)
	g.timer = time.AfterFunc(opts.Timeout, func() {
		g.mu.Lock()
		g.timeout = true
		g.mu.Unlock()
		g.kill()
	})
	go g.readLoop(pr)
	t.Cleanup(func() {
		g.kill()
		<-g.exited
		os.RemoveAll(g.tmpDir)
	})
	return g, nil
}

func (g *Guest) logf(format string, args ...any) {
	g.t.Helper()
	g.t.Logf("[guest %s +%.1fs] %s", g.name, time.Since(g.started).Seconds(), fmt.Sprintf(format, args...))
}

func (g *Guest) readLoop(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		g.mu.Lock()
		g.lines = append(g.lines, line)
		close(g.notify)
		g.notify = make(chan struct{})
		g.mu.Unlock()
		if g.verbose {
			g.t.Logf("[guest %s +%.1fs] %s", g.name, time.Since(g.started).Seconds(), line)
		}
	}
	err := g.cmd.Wait()
	g.timer.Stop()
	g.mu.Lock()
	g.waitErr = err
	close(g.notify)
	g.notify = make(chan struct{})
	g.mu.Unlock()
	close(g.exited)
}

func (g *Guest) kill() {
	if g.cmd.Process == nil {
		return
	}
	select {
	case <-g.exited:
		return
	default:
	}
	// The process group holds QEMU and the socat helpers of guestfwd.
	_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
}

// HostPort returns the host port forwarded to guestPort (see Options.HostFwd).
func (g *Guest) HostPort(guestPort int) int { return g.hostFwd[guestPort] }

// HostAddr returns "127.0.0.1:PORT" for the host side of guestPort.
func (g *Guest) HostAddr(guestPort int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(g.hostFwd[guestPort]))
}

// Output returns the console output so far.
func (g *Guest) Output() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.lines, "\n") + "\n"
}

// WaitFor waits until a console line contains marker. It fails if the guest
// exits first or ctx ends.
func (g *Guest) WaitFor(ctx context.Context, marker string) error {
	seen := 0
	for {
		g.mu.Lock()
		for ; seen < len(g.lines); seen++ {
			if strings.Contains(g.lines[seen], marker) {
				g.mu.Unlock()
				g.logf("saw %q", marker)
				return nil
			}
		}
		ch := g.notify
		g.mu.Unlock()
		select {
		case <-g.exited:
			// Drain lines that arrived with the exit.
			g.mu.Lock()
			found := false
			for ; seen < len(g.lines); seen++ {
				found = found || strings.Contains(g.lines[seen], marker)
			}
			g.mu.Unlock()
			if found {
				return nil
			}
			g.logConsole()
			return fmt.Errorf("guest %s exited before %q: %w", g.name, marker, ErrNoResult)
		case <-ctx.Done():
			g.logConsole()
			return fmt.Errorf("guest %s: waiting for %q: %w", g.name, marker, ctx.Err())
		case <-ch:
		}
	}
}

// Wait waits for the guest to power off and returns its console output and
// the result (nil for PASS).
func (g *Guest) Wait(ctx context.Context) (string, error) {
	select {
	case <-g.exited:
	case <-ctx.Done():
		g.kill()
		<-g.exited
	}
	return g.result(ctx.Err())
}

// Stop kills the guest (if still running) and returns its console output.
// The error is nil when the guest was running normally or had passed.
func (g *Guest) Stop() (string, error) {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.kill()
	<-g.exited
	out := g.Output()
	if strings.Contains(out, resultMarker+"FAIL") {
		g.logConsole()
		return out, fmt.Errorf("guest %s: %w", g.name, ErrFailed)
	}
	g.logf("stopped")
	return out, nil
}

var resultRE = regexp.MustCompile(`KURA-GUEST-RESULT: (PASS|FAIL) rc=(\d+)`)

func (g *Guest) result(ctxErr error) (string, error) {
	out := g.Output()
	g.mu.Lock()
	timedOut := g.timeout
	g.mu.Unlock()
	m := resultRE.FindAllStringSubmatch(out, -1)
	elapsed := time.Since(g.started)
	switch {
	case len(m) > 0 && m[len(m)-1][1] == "PASS":
		g.logf("PASS in %.1fs", elapsed.Seconds())
		return out, nil
	case len(m) > 0:
		g.logConsole()
		return out, fmt.Errorf("guest %s: rc=%s after %.1fs: %w", g.name, m[len(m)-1][2], elapsed.Seconds(), ErrFailed)
	case timedOut:
		g.logConsole()
		return out, fmt.Errorf("guest %s: after %.1fs: %w", g.name, elapsed.Seconds(), ErrTimeout)
	case ctxErr != nil:
		g.logConsole()
		return out, fmt.Errorf("guest %s: %w", g.name, ctxErr)
	default:
		g.logConsole()
		return out, fmt.Errorf("guest %s: qemu exit %v after %.1fs: %w", g.name, g.waitErr, elapsed.Seconds(), ErrNoResult)
	}
}

func (g *Guest) logConsole() {
	if g.verbose {
		return // already streamed
	}
	g.t.Logf("[guest %s] console output:\n%s", g.name, g.Output())
}

// Check is one "KURA-CHECK:" line of a guest script.
type Check struct {
	Name   string
	Passed bool
	Detail string // the rest of the line, and for failures the output lines before it
}

var checkRE = regexp.MustCompile(`^KURA-CHECK: (PASS|FAIL) (\S+)(.*)$`)

// Checks extracts the check results from console output, in order.
func Checks(output string) []Check {
	var res []Check
	var pending []string
	for _, line := range strings.Split(output, "\n") {
		if m := checkRE.FindStringSubmatch(line); m != nil {
			d := strings.TrimSpace(m[3])
			if len(pending) > 0 {
				d += "\n" + strings.Join(pending, "\n")
			}
			res = append(res, Check{Name: m[2], Passed: m[1] == "PASS", Detail: d})
			pending = nil
			continue
		}
		if strings.HasPrefix(line, "  | ") {
			pending = append(pending, line)
		} else {
			pending = nil
		}
	}
	return res
}

// ReportChecks turns each check of the output into a subtest of t (so each
// shows up as its own PASS/FAIL), and fails t when any name in want did not
// run. It returns the number of checks seen.
func ReportChecks(t *testing.T, output string, want ...string) int {
	t.Helper()
	checks := Checks(output)
	seen := map[string]bool{}
	for _, c := range checks {
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			if !c.Passed {
				t.Errorf("guest check %s failed: %s", c.Name, c.Detail)
			} else {
				t.Logf("guest check %s passed %s", c.Name, c.Detail)
			}
		})
	}
	var missing []string
	for _, w := range want {
		if !seen[w] {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("guest checks that never ran: %v", missing)
	}
	return len(checks)
}

var valueRE = regexp.MustCompile(`^(?:  \| )?KURA-VALUE: ([A-Za-z0-9_.-]+)=(.*)$`)

// Values extracts "KURA-VALUE: name=value" lines (printed by the prelude's
// `value NAME VALUE`) from console output; the last one of a name wins.
func Values(output string) map[string]string {
	res := map[string]string{}
	for _, line := range strings.Split(output, "\n") {
		if m := valueRE.FindStringSubmatch(line); m != nil {
			res[m[1]] = strings.TrimSpace(m[2])
		}
	}
	return res
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeInitrd writes base + padding to 512 bytes + a cpio holding /test.sh,
// /kura.sh (the prelude), /env.sh and the extra files.
func writeInitrd(dst, base string, opts Options) error {
	in, err := os.Open(base)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	if err != nil {
		out.Close()
		return err
	}
	if pad := (512 - n%512) % 512; pad > 0 {
		if _, err := out.Write(make([]byte, pad)); err != nil {
			out.Close()
			return err
		}
	}
	var env strings.Builder
	keys := make([]string, 0, len(opts.Env))
	for k := range opts.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&env, "export %s=%s\n", k, shellQuote(opts.Env[k]))
	}
	script := ". /kura.sh\n" + opts.Script + "\nkura_finish\n"
	files := []cpioFile{
		{name: "kura.sh", mode: 0o644, data: []byte(prelude)},
		{name: "test.sh", mode: 0o755, data: []byte(script)},
		{name: "env.sh", mode: 0o644, data: []byte(env.String())},
	}
	extra := make([]string, 0, len(opts.ExtraFiles))
	for p := range opts.ExtraFiles {
		extra = append(extra, p)
	}
	sort.Strings(extra)
	for _, p := range extra {
		files = append(files, cpioFile{name: strings.TrimLeft(p, "/"), mode: 0o755, data: opts.ExtraFiles[p]})
	}
	if _, err := out.Write(newcArchive(files)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
