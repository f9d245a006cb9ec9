package nvmetcp

import (
	"context"
	"runtime"
	"sync"
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

// TestNoGoroutineLeaks: after Device.Close and Target.Close every
// goroutine started by either is gone.
func TestNoGoroutineLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		tg, err := NewTarget(TargetConfig{ListenAddr: "127.0.0.1:0", Logger: quietLogger()})
		must(t, err)
		must(t, tg.Start(context.Background()))
		nqn, _ := addMalloc(t, tg, "leak", 4<<20, 512)
		d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 4})
		var wg sync.WaitGroup
		for w := 0; w < 16; w++ {
			wg.Go(func() { d.WriteAt(make([]byte, 64<<10), int64(w)*65536) })
		}
		wg.Wait()
		if _, err := Discover(context.Background(), tg.Addr().String(), testHost); err != nil {
			t.Fatal(err)
		}
		must(t, d.Close())
		must(t, tg.Close())
	}()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
