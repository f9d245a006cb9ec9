package benchsuite

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/testtool"
)

// TestQuickRun is the smoke test of the runner: a tiny run of fio on the raw
// file (plus nbdkit when installed, and a Kura system that must come out as
// "not available"), then JSON, Markdown and plot. Not a measurement.
func TestQuickRun(t *testing.T) {
	testtool.Require(t, "fio")
	dir := t.TempDir()
	file := filepath.Join(dir, "disk.img")
	if err := prepareFile(file, 32<<20, t.Logf); err != nil {
		t.Skipf("no O_DIRECT file in %s: %v", dir, err)
	}
	only := "raw,kura-malloc"
	if _, err := exec.LookPath("nbdkit"); err == nil {
		only += ",nbdkit-file"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var partial []int
	res, err := Run(ctx, Config{
		Rounds: 2, Runtime: time.Second, Only: only, Workloads: WRandRead1 + "," + WRandWrite32,
		File: file, Size: 32 << 20, WorkDir: filepath.Join(dir, "work"), Note: "test", Logf: t.Logf,
		AfterRound: func(r *Results) { partial = append(partial, r.Meta.Rounds, len(r.Medians)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(partial) != 2 || partial[0] != 1 || partial[1] == 0 {
		t.Errorf("AfterRound calls (rounds, medians): %v, want one call after round 1", partial)
	}
	var avail []string
	for _, s := range res.Systems {
		if s.Available {
			avail = append(avail, s.Name)
		} else if s.Name == SysKuraMalloc && !strings.Contains(s.Reason, "not available") {
			t.Errorf("kura-malloc without its binary: reason %q", s.Reason)
		}
	}
	if len(avail) == 0 || avail[0] != SysRaw {
		t.Fatalf("available systems %v", avail)
	}
	// 2 rounds × 2 workloads per available system.
	if len(res.Samples) != 4*len(avail) {
		t.Errorf("%d samples for %d systems", len(res.Samples), len(avail))
	}
	for _, s := range res.Samples {
		if s.Err != "" || s.IOPS <= 0 || s.LatMeanUs <= 0 {
			t.Errorf("bad sample %+v", s)
		}
		if s.System != SysRaw && s.ServerCPUUsPerIO <= 0 {
			t.Logf("no server CPU for %s/%s (short run, coarse clock ticks)", s.System, s.Workload)
		}
	}
	raw, ok := Lookup(res.Medians, SysRaw, WRandWrite32)
	if !ok || raw.N != 2 {
		t.Errorf("raw median %+v %v", raw, ok)
	}
	js := filepath.Join(dir, "out", "results.json")
	if err := WriteJSON(js, res); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(js)
	if err != nil || len(back.Samples) != len(res.Samples) || back.Meta.Rounds != 2 {
		t.Fatalf("JSON round trip: %v", err)
	}
	doc := filepath.Join(dir, "out", "bench.md")
	if err := os.WriteFile(doc, []byte("# B\n\n"+BeginMarker+"\n"+EndMarker+"\n\ntail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plot := ""
	if _, err := exec.LookPath("gnuplot"); err == nil {
		png := filepath.Join(dir, "out", "p.png")
		if err := Plot(ctx, res, png); err != nil {
			t.Errorf("plot: %v", err)
		} else if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
			t.Errorf("plot file: %v", err)
		}
		plot = "p.png"
	}
	if err := WriteDoc(doc, Markdown(res, plot)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(doc)
	if !strings.Contains(string(b), "| raw | ") || !strings.HasSuffix(string(b), "tail\n") {
		t.Errorf("doc:\n%s", b)
	}
}
