package nvmetcp

import (
	"syscall"
	"testing"
	"time"
)

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestIdleUsesNoCPU: a target with a connected, idle initiator (and an idle
// discovery-less listener) must not poll: no loops or tickers faster than
// the keep-alive period.
func TestIdleUsesNoCPU(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "idle", 1<<20, 512)
	d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 4, KATO: 30 * time.Second})
	defer d.Close()
	d.ReadAt(make([]byte, 512), 0)
	time.Sleep(200 * time.Millisecond)
	c0 := processCPU()
	time.Sleep(2 * time.Second)
	used := processCPU() - c0
	// The Go runtime itself (GC, sysmon backing off) uses a little.
	if used > 40*time.Millisecond {
		t.Fatalf("idle target+initiator used %v CPU in 2 s", used)
	}
	t.Logf("idle CPU over 2 s: %v", used)
}
