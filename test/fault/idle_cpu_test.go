package fault_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cpuTicks returns the user+system CPU time of pid in clock ticks (10 ms).
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the ")" that ends the command name: state is field 3,
	// utime field 14, stime field 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// TestEngineIdleUsesNoCPU: an engine holding a pool, a thick and a thin
// replica, a two-child nexus published over NVMe/TCP and a third replica
// shared over NBD uses no CPU while nobody does I/O — before any I/O and after
// I/O went through the asynchronous paths (io_uring reapers, the NBD
// replier, the nexus' timers must all go quiet).
func TestEngineIdleUsesNoCPU(t *testing.T) {
	dir := t.TempDir()
	e := newEngine(t, "idle", filepath.Join(dir, "data"))
	disk := filepath.Join(dir, "disk.img")
	sparseFile(t, disk, 256<<20)
	e.kura(t, "pool", "create", "p1", disk)
	e.kura(t, "replica", "create", "p1", "r1", "--size", "64")
	e.kura(t, "replica", "create", "p1", "r2", "--size", "64", "--thin")
	e.kura(t, "nexus", "create", "nx", "--size", "64MiB", "bdev:///r1", "bdev:///r2")
	e.kura(t, "nexus", "publish", "nx", "--allow-any-host")
	e.kura(t, "replica", "create", "p1", "r3", "--size", "16")
	e.kura(t, "replica", "share", "p1", "r3", "--protocol", "nbd")
	pid := e.cmd.Process.Pid
	idle := func(when string) {
		t.Helper()
		time.Sleep(time.Second) // let start-up or I/O work settle
		const window = 5 * time.Second
		a := cpuTicks(t, pid)
		time.Sleep(window)
		used := cpuTicks(t, pid) - a
		t.Logf("idle %s: %d ticks (%d ms) of CPU in %v", when, used, used*10, window)
		if used > 3 { // 30 ms in 5 s: 0.6 % of one core
			t.Errorf("idle engine (%s) used %d ms of CPU in %v", when, used*10, window)
		}
	}
	idle("after setup")

	conn, err := dialNBD(e.nbd, "r3", opTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, blockSize)
	for i := range 2000 {
		fillBlock(buf, uint64(i%1024), uint64(i))
		if err := conn.WriteAt(buf, int64(i%1024)*blockSize); err != nil {
			t.Fatal(err)
		}
		if err := conn.ReadAt(buf, int64(i%1024)*blockSize); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	idle("after 4000 I/Os (connection still open)")
}
