package benchsuite

import (
	"math"
	"strings"
	"testing"
	"time"
)

func sample(sys, w string, round int, iops, lat float64) Sample {
	return Sample{System: sys, Workload: w, Round: round, Metrics: Metrics{IOPS: iops, LatMeanUs: lat, BWBytes: iops * 4096, IOs: int64(iops)}}
}

func TestMediansAndRatios(t *testing.T) {
	var ss []Sample
	for r, v := range []float64{100e3, 70e3, 80e3} {
		ss = append(ss, sample(SysRaw, WRandRead32, r+1, v, 400))
	}
	for r, v := range []float64{40e3, 30e3, 35e3} {
		ss = append(ss, sample(SysNbdkitFile, WRandRead32, r+1, v, 900))
	}
	ss = append(ss,
		sample(SysKuraReplica, WRandRead32, 1, 60e3, 500),
		sample(SysKuraReplica, WRandRead32, 2, 66e3, 480),
		Sample{System: SysKuraReplica, Workload: WRandRead32, Round: 3, Err: "fio: boom"},
		sample(SysQemuNBD, WRandRead32, 1, 50e3, 700),
	)
	ms := ComputeMedians(ss)
	if len(ms) != 4 {
		t.Fatalf("got %d medians: %+v", len(ms), ms)
	}
	raw, _ := Lookup(ms, SysRaw, WRandRead32)
	if raw.IOPS != 80e3 || raw.IOPSMin != 70e3 || raw.IOPSMax != 100e3 || raw.N != 3 {
		t.Errorf("raw median %+v", raw)
	}
	kr, _ := Lookup(ms, SysKuraReplica, WRandRead32)
	if kr.IOPS != 63e3 || kr.N != 2 || kr.Errors != 1 || kr.LatMeanUs != 490 {
		t.Errorf("kura median (even count, one error) %+v", kr)
	}
	if r, ok := Ratio(ms, SysKuraReplica, SysNbdkitFile, WRandRead32); !ok || math.Abs(r-1.8) > 1e-9 {
		t.Errorf("ratio vs nbdkit = %v %v, want 1.8", r, ok)
	}
	if r, ok := Ratio(ms, SysKuraReplica, SysRaw, WRandRead32); !ok || math.Abs(r-0.7875) > 1e-9 {
		t.Errorf("ratio vs raw = %v", r)
	}
	if _, ok := Ratio(ms, SysKuraReplica, SysRaw, WRandWrite32); ok {
		t.Error("ratio of an unmeasured workload reported")
	}

	tr := EvaluateTargets(ms)
	get := func(id, sys string) TargetResult {
		for _, x := range tr {
			if x.ID == id && x.System == sys {
				return x
			}
		}
		t.Fatalf("target %s/%s missing", id, sys)
		return TargetResult{}
	}
	if x := get("nbd-read-vs-nbdkit", SysKuraReplica); x.Status != StatusMet || !x.Counts {
		t.Errorf("1.8× vs 1.5× goal: %+v", x)
	}
	if x := get("nbd-read-vs-raw", SysKuraReplica); x.Status != StatusNotMet {
		t.Errorf("0.79× vs 0.8× goal: %+v", x)
	}
	if x := get("nbd-read-vs-qemu", SysKuraReplica); x.Status != StatusMet || math.Abs(x.Value-1.26) > 1e-9 {
		t.Errorf("vs qemu: %+v", x)
	}
	if x := get("nbd-write-vs-nbdkit", SysKuraReplica); x.Status != StatusNotMeasured {
		t.Errorf("unmeasured write: %+v", x)
	}
	if x := get("malloc-read-vs-nbdkit", SysKuraMalloc); x.Status != StatusNotMeasured {
		t.Errorf("unmeasured malloc: %+v", x)
	}

	res := &Results{
		Workloads: []Workload{mk("randread", 4096, 32)},
		Systems: []SystemInfo{
			{System: System{Name: SysRaw, Group: GroupFile}, Available: true},
			{System: System{Name: SysKuraReplica, Group: GroupFile}, Available: true},
			{System: System{Name: SysNbdkitFile, Group: GroupFile}, Available: true},
			{System: System{Name: SysQemuNBD, Group: GroupFile}, Available: true},
			{System: System{Name: SysKuraMalloc, Group: GroupMemory}, Reason: "not available: kurabench-nbd not built"},
		},
		Medians: ms, Targets: tr,
	}
	md := Markdown(res, "benchmarks/p.png")
	for _, want := range []string{
		"| kura-replica | 63.0 | 258 | 490.0 |", // kIOPS, MB/s, latency
		"| 0.79 | 1.80 | 1.26 |",                // × raw, × nbdkit, × qemu-nbd
		"| 60.0–66.0 (2, 1 failed) |",
		"| kura-malloc |  | not available: kurabench-nbd not built |",
		"| 4k randread QD32 ≥ 1.5× nbdkit file (cache=none) | kura-replica | 1.80× | ≥ 1.50× | **met** |",
		"![4k randread IOPS vs queue depth](benchmarks/p.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestSpliceDoc(t *testing.T) {
	doc := "# Bench\n\nintro\n\n" + BeginMarker + "\nold\n" + EndMarker + "\n\n## Why\ntext\n"
	got := SpliceDoc(doc, "NEW")
	want := "# Bench\n\nintro\n\n" + BeginMarker + "\nNEW\n" + EndMarker + "\n\n## Why\ntext\n"
	if got != want {
		t.Errorf("splice:\n%q\nwant\n%q", got, want)
	}
	if got := SpliceDoc("# x", "G"); !strings.HasPrefix(got, "# x\n\n"+BeginMarker+"\nG\n"+EndMarker) {
		t.Errorf("append: %q", got)
	}
}

func TestWorkloadsAndSystems(t *testing.T) {
	ws := DefaultWorkloads()
	names := map[string]bool{}
	for _, w := range ws {
		names[w.Name] = true
	}
	for _, n := range []string{WRandRead1, WRandRead32, WRandWrite1, WRandWrite32, "randread-4k-qd4", "randread-4k-qd16", "read-128k-qd8", "write-128k-qd8"} {
		if !names[n] {
			t.Errorf("workload %s missing", n)
		}
	}
	if got := FilterWorkloads(ws, "qd32, 128k"); len(got) != 4 {
		t.Errorf("filter qd32,128k: %v", got)
	}
	if got := FilterWorkloads(ws, "qd1,randread-4k-qd4"); len(got) != 3 {
		t.Errorf("filter qd1 must not match qd16: %v", got)
	}
	if _, err := SelectSystems("raw,nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown system: %v", err)
	}
	s, err := SelectSystems("qemu-nbd,raw")
	if err != nil || len(s) != 2 || s[0].Name != SysRaw {
		t.Errorf("select keeps report order: %v %v", s, err)
	}
	if r := rotate(s, 1); r[0].Name != SysQemuNBD || len(r) != 2 {
		t.Errorf("rotate: %v", r)
	}
}

func TestParseLoopCal(t *testing.T) {
	m, err := ParseLoopCal([]byte("iops=81234 lat_mean_us=393.5 client_cpu_us=0.47 ios=406170\n"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.IOPS != 81234 || m.LatMeanUs != 393.5 || m.ClientCPUUsPerIO != 0.47 || m.IOs != 406170 || m.RuntimeMs != 5000 || m.BWBytes != 81234*4096 {
		t.Fatalf("parsed %+v", m)
	}
	for _, bad := range []string{"", "iops=1 ios=1", "iops=x lat_mean_us=1 client_cpu_us=1 ios=1", "iops=0 lat_mean_us=1 client_cpu_us=1 ios=0", "loopcal-client: nothing completed"} {
		if _, err := ParseLoopCal([]byte(bad), time.Second); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
