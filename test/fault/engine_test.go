// Package fault_test holds end-to-end fault tests: real `kura engine`
// processes on loopback, killed and restarted while a client writes through
// them. See remote_kill_test.go.
package fault_test

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
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// kuraBin is the kura binary TestMain builds once for every test here.
var kuraBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kura-fault-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kuraBin = filepath.Join(dir, "kura")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	args := []string{"build", "-o", kuraBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/kura-io/kura/cmd/kura")
	if out, err := exec.Command(gobin, args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build kura: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a log sink written by the engine's output copier and read
// by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// engine is one storage node: a data directory and fixed loopback ports,
// run as a `kura engine` subprocess that can be SIGKILLed and restarted on
// the same directory and ports (remote children name the NVMe/TCP port in
// their URI, so it must not change across restarts).
type engine struct {
	name                string
	dataDir             string
	grpcAddr, nbd, nvmf string
	log                 *syncBuffer // every incarnation, separated by banners
	conn                *grpc.ClientConn
	starts              int
	cmd                 *exec.Cmd
	done                chan struct{} // closed when cmd has exited
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// newEngine starts an engine on dataDir with fresh ports (retrying with new
// ports if one was taken between picking and binding). At cleanup it is
// killed and, when the test failed, its log is printed (tail) and saved.
func newEngine(t *testing.T, name, dataDir string) *engine {
	t.Helper()
	e := &engine{name: name, dataDir: dataDir, log: &syncBuffer{}}
	t.Cleanup(func() {
		e.kill()
		if e.conn != nil {
			e.conn.Close()
		}
		if strings.Contains(e.log.String(), "WARNING: DATA RACE") {
			t.Errorf("engine %s: the race detector reported a data race (see its log)", name)
		}
		if t.Failed() {
			e.dumpLog(t)
		}
	})
	for attempt := 0; ; attempt++ {
		e.grpcAddr, e.nbd, e.nvmf = freeAddr(t), freeAddr(t), freeAddr(t)
		err := e.start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("engine %s: %v", name, err)
		}
		t.Logf("engine %s: %v; retrying with new ports", name, err)
	}
	conn, err := grpc.NewClient(e.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e.conn = conn
	return e
}

// start runs the engine and waits until its health service is SERVING.
func (e *engine) start() error {
	e.starts++
	fmt.Fprintf(e.log, "\n===== engine %s start #%d at %s (grpc %s, nbd %s, nvmf %s) =====\n",
		e.name, e.starts, time.Now().Format(time.RFC3339Nano), e.grpcAddr, e.nbd, e.nvmf)
	e.cmd = exec.Command(kuraBin, "engine", "--data-dir", e.dataDir, "--grpc", e.grpcAddr,
		"--nbd", e.nbd, "--nvmf", e.nvmf, "--log-level", "debug", "--node-name", e.name,
		"--child-timeout", childTimeout.String())
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	e.done = done
	cmd := e.cmd
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	conn, err := grpc.NewClient(e.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("engine exited during start-up (%v)", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			e.kill()
			return fmt.Errorf("engine not healthy after 30 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restart starts the engine again on the same directory and ports.
func (e *engine) restart(t *testing.T) {
	t.Helper()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = e.start(); err == nil {
			return
		}
		t.Logf("engine %s restart: %v", e.name, err)
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("engine %s does not restart on its ports: %v", e.name, err)
}

// kill SIGKILLs the engine and waits for it to be gone.
func (e *engine) kill() {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	select {
	case <-e.done:
		return
	default:
	}
	_ = e.cmd.Process.Signal(syscall.SIGKILL)
	<-e.done
	fmt.Fprintf(e.log, "===== engine %s SIGKILLed at %s =====\n", e.name, time.Now().Format(time.RFC3339Nano))
}

// run runs the CLI against this engine; err describes a failure.
func (e *engine) run(args ...string) (string, error) {
	cmd := exec.Command(kuraBin, append([]string{"--engine", e.grpcAddr}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("engine %s: kura %s: %v: %s", e.name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// kura runs the CLI against this engine and returns stdout, failing the
// test on a non-zero exit.
func (e *engine) kura(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dumpLog prints the last lines of the engine log and saves all of it to a
// file that outlives the test.
func (e *engine) dumpLog(t *testing.T) {
	all := e.log.String()
	lines := strings.Split(all, "\n")
	const tail = 150
	if len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	path := ""
	if f, err := os.CreateTemp("", "kura-fault-"+e.name+"-*.log"); err == nil {
		_, _ = f.WriteString(all)
		f.Close()
		path = f.Name()
	}
	t.Logf("engine %s log (last %d lines; full log in %s):\n%s", e.name, len(lines), path, strings.Join(lines, "\n"))
}
