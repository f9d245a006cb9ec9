package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRingThreadsRaiseGOMAXPROCS: while `kura bench` drives two NVMe/TCP
// I/O queues at QD32 against a replica on io_uring, both queues' readers
// enter ring mode and the engine keeps GOMAXPROCS at one more than its
// ring threads (two threads blocked in io_uring_enter must not hold every
// P); when the host stops, the threads leave ring mode and GOMAXPROCS
// returns to where it was. An explicit GOMAXPROCS in the environment
// stays as it is.
func TestRingThreadsRaiseGOMAXPROCS(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk")
	zeroFile(t, img, 64<<20)
	e := startEngineProc(t, filepath.Join(dir, "data"))
	e.ok(t, "pool", "create", "p", img)
	e.ok(t, "replica", "create", "p", "r1", "--size=32")
	uri := strings.TrimSpace(e.ok(t, "replica", "share", "p", "r1", "--allow-any-host"))
	base := e.metric(t, "kura_gomaxprocs")
	if base < 1 || e.metric(t, "kura_ring_threads") != 0 {
		t.Fatalf("idle engine: kura_gomaxprocs %v, kura_ring_threads %v", base, e.metric(t, "kura_ring_threads"))
	}
	fixed := os.Getenv("GOMAXPROCS") != ""

	done := make(chan string, 1)
	go func() { // owned: ends with the bench (2 s)
		out, err := exec.Command(kuraBin, "bench", uri, "--queues", "2", "--qd", "32", "--time", "2s").CombinedOutput()
		if err != nil {
			out = append(out, err.Error()...)
		}
		done <- string(out)
	}()
	var maxThreads float64
	matched := false
	deadline := time.After(10 * time.Second)
poll:
	for {
		select {
		case out := <-done:
			if !strings.Contains(out, "errors 0") {
				t.Fatalf("bench: %s", out)
			}
			break poll
		case <-deadline:
			t.Fatal("bench did not end")
		case <-time.After(50 * time.Millisecond):
		}
		n, procs := e.metric(t, "kura_ring_threads"), e.metric(t, "kura_gomaxprocs")
		maxThreads = max(maxThreads, n)
		want := max(base, n+1)
		if fixed {
			want = base
		}
		if n >= 2 && procs == want {
			matched = true
		}
	}
	if maxThreads < 2 {
		t.Fatalf("at most %v ring threads during the bench, want both I/O queues in ring mode", maxThreads)
	}
	if !matched {
		t.Fatalf("no sample with ≥ 2 ring threads had GOMAXPROCS max(%v, threads+1)", base)
	}
	// Idle queues leave ring mode (ringIdle, 50 ms) and GOMAXPROCS goes back.
	for end := time.Now().Add(5 * time.Second); ; {
		n, procs := e.metric(t, "kura_ring_threads"), e.metric(t, "kura_gomaxprocs")
		if n == 0 && procs == base {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("after the bench: kura_ring_threads %v, kura_gomaxprocs %v (base %v)", n, procs, base)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
