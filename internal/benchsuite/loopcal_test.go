package benchsuite

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/testtool"
)

// TestLoopCal builds scripts/loopcal and measures a short randread and
// randwrite through it on a small file, as make bench does.
func TestLoopCal(t *testing.T) {
	gcc := testtool.Require(t, "gcc")[0]
	testtool.RequireFile(t, "/usr/include/liburing.h", "liburing-dev")
	dir := t.TempDir()
	src := filepath.Join("..", "..", "scripts", "loopcal")
	for _, b := range [][]string{
		{"-o", filepath.Join(dir, "loopcal-server"), filepath.Join(src, "server.c"), "-luring"},
		{"-o", filepath.Join(dir, "loopcal-client"), filepath.Join(src, "client.c")},
	} {
		if out, err := exec.Command(gcc, append([]string{"-O2", "-Wall", "-Werror"}, b...)...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v\n%s", b, err, out)
		}
	}
	file := filepath.Join(dir, "disk.img")
	const size = 64 << 20
	if err := os.WriteFile(file, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := &Env{File: file, Size: size, WorkDir: dir, LoopCal: dir, Logf: t.Logf}
	tg, err := startLoopCal(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.stop()
	if tg.Supports(Workload{RW: "read", BS: 128 << 10, QD: 8}) || !tg.Supports(Workload{RW: "randwrite", BS: 4096, QD: 1}) {
		t.Fatal("loopcal should take 4k random workloads only")
	}
	for _, w := range []Workload{{RW: "randread", BS: 4096, QD: 4}, {RW: "randwrite", BS: 4096, QD: 32}} {
		m, err := tg.Measure(ctx, w, 300*time.Millisecond, 100*time.Millisecond)
		if err != nil {
			t.Fatalf("%s QD%d: %v", w.RW, w.QD, err)
		}
		if m.IOPS <= 0 || m.IOs <= 0 || m.LatMeanUs <= 0 {
			t.Fatalf("%s QD%d: %+v", w.RW, w.QD, m)
		}
		t.Logf("%s QD%d: %.0f IOPS, %.1f µs", w.RW, w.QD, m.IOPS, m.LatMeanUs)
	}
	if err := tg.alive(); err != nil {
		t.Fatal(err)
	}
}
