// Package benchsuite runs Kura's comparative benchmark matrix (issue 6):
// fio on the raw file, fio's nbd engine against Kura and its peers (nbdkit,
// qemu-nbd) on the same backing file, malloc Kura against nbdkit memory, and
// kura bench over NVMe/TCP. It alternates the systems within each round,
// takes medians over rounds, and writes JSON, a Markdown report and a PNG
// plot. cmd/kurabench is its command line; scripts/bench.sh (make bench)
// installs the tools and runs it.
package benchsuite

import (
	"fmt"
	"strings"
)

// Workload is one fio job shape.
type Workload struct {
	Name string `json:"name"`
	RW   string `json:"rw"` // fio rw: randread, randwrite, read, write
	BS   int    `json:"bs"` // bytes
	QD   int    `json:"qd"`
}

// Write reports whether the workload writes.
func (w Workload) Write() bool { return strings.Contains(w.RW, "write") }

// Random reports whether the workload is random I/O.
func (w Workload) Random() bool { return strings.HasPrefix(w.RW, "rand") }

func mk(rw string, bs, qd int) Workload {
	size := fmt.Sprintf("%dk", bs/1024)
	return Workload{Name: fmt.Sprintf("%s-%s-qd%d", rw, size, qd), RW: rw, BS: bs, QD: qd}
}

// SweepQDs are the queue depths of the 4k randread sweep (the plot).
var SweepQDs = []int{1, 4, 16, 32}

// SeqQD is the queue depth of the 128k sequential workloads.
const SeqQD = 8

// DefaultWorkloads is the matrix of issue 6: 4k random read/write at QD1
// and QD32, the 4k randread queue-depth sweep, and 128k sequential.
func DefaultWorkloads() []Workload {
	var ws []Workload
	for _, qd := range SweepQDs {
		ws = append(ws, mk("randread", 4096, qd))
	}
	ws = append(ws,
		mk("randwrite", 4096, 1),
		mk("randwrite", 4096, 32),
		mk("read", 128*1024, SeqQD),
		mk("write", 128*1024, SeqQD),
	)
	return ws
}

// Workload names used by the targets and the report.
var (
	WRandRead1   = mk("randread", 4096, 1).Name
	WRandRead32  = mk("randread", 4096, 32).Name
	WRandWrite1  = mk("randwrite", 4096, 1).Name
	WRandWrite32 = mk("randwrite", 4096, 32).Name
)

// FilterWorkloads keeps the workloads whose names contain one of the
// comma-separated patterns (all when spec is empty).
func FilterWorkloads(ws []Workload, spec string) []Workload {
	if strings.TrimSpace(spec) == "" {
		return ws
	}
	pats := splitList(spec)
	var out []Workload
	for _, w := range ws {
		for _, p := range pats {
			if tokensMatch(w.Name, p) {
				out = append(out, w)
				break
			}
		}
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// tokensMatch reports whether pattern's dash-separated tokens appear, in a
// row, among name's ("qd1" matches "randread-4k-qd1" but not "...-qd16").
func tokensMatch(name, pattern string) bool {
	nt, pt := strings.Split(name, "-"), strings.Split(pattern, "-")
	for i := 0; i+len(pt) <= len(nt); i++ {
		ok := true
		for j := range pt {
			if nt[i+j] != pt[j] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
