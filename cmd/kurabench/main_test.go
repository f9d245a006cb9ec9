package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/testtool"
)

// TestQuickCommand runs `kurabench run --quick` on a tiny file, raw only,
// one workload: the command line, JSON, doc splice and (with gnuplot) the
// plot all work. Not a measurement.
func TestQuickCommand(t *testing.T) {
	testtool.Require(t, "fio")
	dir := t.TempDir()
	doc := filepath.Join(dir, "benchmarks.md")
	if err := os.WriteFile(doc, []byte("# Benchmarks\n\nhand-written\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"run", "--quick", "--only", "raw", "--workloads", "randread-4k-qd1",
		"--file", filepath.Join(dir, "disk.img"), "--size-mib", "16",
		"--json", filepath.Join(dir, "out", "results.json"), "--doc", doc, "--png", filepath.Join(dir, "out", "p.png")})
	if err != nil {
		if strings.Contains(err.Error(), "O_DIRECT") {
			t.Skipf("no O_DIRECT in %s: %v", dir, err)
		}
		t.Fatal(err)
	}
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.HasPrefix(s, "# Benchmarks\n\nhand-written\n") || !strings.Contains(s, "| raw | ") || !strings.Contains(s, "--quick smoke run") {
		t.Errorf("doc:\n%s", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "results.json")); err != nil {
		t.Error(err)
	}
	// report re-renders from the JSON.
	if err := run([]string{"report", "--json", filepath.Join(dir, "out", "results.json"), "--doc", doc, "--png", filepath.Join(dir, "out", "p.png")}); err != nil {
		t.Fatal(err)
	}
}

func TestSecondsArgs(t *testing.T) {
	got := secondsArgs([]string{"--runtime", "10", "--ramp=2", "--rounds", "3", "-runtime=5s"}, "runtime", "ramp")
	want := []string{"--runtime", "10s", "--ramp=2s", "--rounds", "3", "-runtime=5s"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v want %v", got, want)
	}
	if d, err := time.ParseDuration(got[1]); err != nil || d != 10*time.Second {
		t.Error(d, err)
	}
}
