package cli

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lineBuffer collects a process's output lines for a test that reads it
// while they arrive.
type lineBuffer struct {
	mu sync.Mutex // guards b
	b  strings.Builder
}

func (l *lineBuffer) add(line string) {
	l.mu.Lock()
	l.b.WriteString(line + "\n")
	l.mu.Unlock()
}

func (l *lineBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runUp starts `kura up` and waits until it prints "Press Ctrl-C",
// retrying with new ports when it exits during start-up (a port race).
func runUp(t *testing.T, data string) (*exec.Cmd, *engineProc, *lineBuffer, chan struct{}) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		cmd, p, out, done, ok := tryRunUp(t, data, attempt == 2)
		if ok {
			return cmd, p, out, done
		}
	}
}

func tryRunUp(t *testing.T, data string, last bool) (*exec.Cmd, *engineProc, *lineBuffer, chan struct{}, bool) {
	t.Helper()
	p := &engineProc{grpc: freeAddr(t), nbd: freeAddr(t), nvmf: freeAddr(t), log: &bytes.Buffer{}}
	cmd := exec.Command(kuraBin, "up", "--data-dir", data, "--pool-size", "128MiB", "--grpc", p.grpc, "--nbd", p.nbd, "--nvmf", p.nvmf)
	cmd.Stderr = p.log
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stdout lineBuffer // written by the scanner, read by the test
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(io.TeeReader(out, io.Discard))
		signalled := false
		for sc.Scan() {
			stdout.add(sc.Text())
			if !signalled && strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				signalled = true
				close(ready)
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	select {
	case <-ready:
	case <-done:
		if !last {
			return nil, nil, nil, nil, false
		}
		t.Fatalf("kura up exited:\n%s\n%s", stdout.String(), p.log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("kura up not ready after 30 s:\n%s\n%s", stdout.String(), p.log.String())
	}
	return cmd, p, &stdout, done, true
}

// TestUp runs `kura up` twice on one data directory: the first run creates
// the sparse pool file and the default pool, Ctrl-C stops it cleanly, the
// second run re-imports the pool with its replicas.
func TestUp(t *testing.T) {
	data := filepath.Join(t.TempDir(), "kura-data")
	cmd, p, stdout, done := runUp(t, data)
	if !strings.Contains(stdout.String(), `created pool "default"`) || !strings.Contains(stdout.String(), "kura --engine "+p.grpc+" pool list") {
		t.Fatalf("first kura up printed:\n%s", stdout.String())
	}
	fi, err := os.Stat(filepath.Join(data, "pool0.img"))
	if err != nil || fi.Size() != 128<<20 {
		t.Fatalf("pool file: %v %v", fi, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Blocks*512 >= 128<<20 {
		t.Errorf("pool file is not sparse: %d bytes allocated", st.Blocks*512)
	}
	p.ok(t, "replica", "create", "default", "vol1", "--size=64MiB", "--thin")
	if got := p.ok(t, "pool", "list"); !strings.Contains(got, "default              online") {
		t.Fatalf("pool list:\n%s", got)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("kura up did not stop on SIGINT")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("kura up exit %d:\n%s", code, p.log.String())
	}
	if !strings.Contains(stdout.String(), "Kura stopped") {
		t.Fatalf("no stop message:\n%s", stdout.String())
	}

	_, p2, stdout2, _ := runUp(t, data)
	if !strings.Contains(stdout2.String(), `re-imported pool "default"`) {
		t.Fatalf("second kura up printed:\n%s", stdout2.String())
	}
	if got := p2.ok(t, "replica", "list"); !strings.Contains(got, "vol1") {
		t.Fatalf("replica list after restart:\n%s", got)
	}
}
