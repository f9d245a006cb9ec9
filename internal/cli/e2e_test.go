package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// kuraBin is the kura binary built by TestMain for the end-to-end tests.
var kuraBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kura-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kuraBin = filepath.Join(dir, "kura")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(gobin, "build", "-o", kuraBin, "github.com/kura-io/kura/cmd/kura").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build kura: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// engineProc is a `kura engine` subprocess.
type engineProc struct {
	cmd     *exec.Cmd
	grpc    string
	nbd     string
	nvmf    string
	metrics string // Prometheus endpoint host:port
	log     *bytes.Buffer
	done    chan struct{}
}

// startEngineProc runs `kura engine` on dataDir and waits until its health
// service reports SERVING. It is killed at test cleanup if still running.
// Ports are picked free just before the start; if the engine exits during
// start-up (another process took a port in between), it is retried with
// new ports.
func startEngineProc(t testing.TB, dataDir string) *engineProc {
	t.Helper()
	var last *engineProc
	for attempt := 0; attempt < 3; attempt++ {
		p, ok := tryStartEngineProc(t, dataDir)
		if ok {
			return p
		}
		last = p
	}
	t.Fatalf("engine exited during start-up three times:\n%s", last.log.String())
	return nil
}

func tryStartEngineProc(t testing.TB, dataDir string) (*engineProc, bool) {
	t.Helper()
	p := &engineProc{grpc: freeAddr(t), nbd: freeAddr(t), nvmf: freeAddr(t), metrics: freeAddr(t), log: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(kuraBin, "engine", "--data-dir", dataDir, "--grpc", p.grpc, "--nbd", p.nbd, "--nvmf", p.nvmf,
		"--metrics", p.metrics, "--log-level", "debug")
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("engine log:\n%s", p.log.String())
		}
	})
	conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return p, true
		}
		select {
		case <-p.done:
			return p, false
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("engine not healthy after 30 s: %v\n%s", err, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill SIGKILLs the engine and waits for it.
func (p *engineProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *engineProc) stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("engine did not stop on SIGTERM:\n%s", p.log.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("engine exit code %d after SIGTERM:\n%s", code, p.log.String())
	}
}

// kura runs the CLI binary against the engine and returns stdout, stderr
// and the exit code.
func (p *engineProc) kura(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(kuraBin, args...)
	cmd.Env = append(os.Environ(), "KURA_ENGINE="+p.grpc)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// ok runs the CLI and fails the test unless it succeeds.
func (p *engineProc) ok(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, code := p.kura(t, args...)
	if code != 0 {
		t.Fatalf("kura %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fails runs the CLI and checks it fails with one line containing want.
func (p *engineProc) fails(t testing.TB, want string, args ...string) {
	t.Helper()
	out, errOut, code := p.kura(t, args...)
	if code == 0 {
		t.Fatalf("kura %s succeeded (%q), want failure", strings.Join(args, " "), out)
	}
	if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "kura: ") || !strings.Contains(errOut, want) {
		t.Fatalf("kura %s: stderr %q, want one line containing %q", strings.Join(args, " "), errOut, want)
	}
}

// loopDevice attaches file to a loop device, or returns "" when losetup is
// not usable here (not root, no loop driver).
func loopDevice(t testing.TB, file string) string {
	t.Helper()
	if _, err := exec.LookPath("losetup"); err != nil {
		return ""
	}
	out, err := exec.Command("losetup", "-f", "--show", file).CombinedOutput()
	if err != nil {
		t.Logf("losetup failed (%v: %s); using the file directly", err, strings.TrimSpace(string(out)))
		return ""
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Logf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev
}

func zeroFile(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
