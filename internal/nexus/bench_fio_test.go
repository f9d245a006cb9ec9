package nexus

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// fioSlice is how long each side of a pair runs in BenchmarkMirror3Fio:
// longer than benchSlice because every fio slice is a new process.
const fioSlice = time.Second

// BenchmarkMirror3Fio is issue 4's three-way mirror target as written:
// the nexus' 4 KiB random writes at QD32 over three files on one disk
// against fio (io_uring, O_DIRECT) writing the same three files at once
// (one job, files in turn). "qd32" gives fio the same total queue depth
// as the nexus' clients; "qd96" gives it as many writes in flight as the
// nexus can have at its children (the stricter comparison). The metric is
// file writes per second (nexus IOPS × 3, fio IOPS), so a ratio of 1 is
// the disk's three-copy limit.
func BenchmarkMirror3Fio(b *testing.B) {
	if _, err := exec.LookPath("fio"); err != nil {
		b.Skip("fio not installed")
	}
	dir := benchDir(b)
	var ps []string
	for i := range 3 {
		ps = append(ps, benchFile(b, dir, fmt.Sprintf("m%d", i), benchFileSize))
	}
	nx := benchNexus(b, ps, 0)
	for _, qd := range []int{benchQD, 3 * benchQD} {
		b.Run(fmt.Sprintf("fio-qd%d", qd), func(b *testing.B) {
			for range b.N {
				paired(b, benchPairs/2, "file-writes/s", "fio", "nexus3",
					func() float64 { return fioWrites(b, ps, qd, fioSlice) },
					func() float64 { return 3 * measure([]blockdev.Device{nx}, benchQD, fioSlice, true) })
			}
		})
	}
}

// fioWrites runs fio writing files at once with qd writes in flight in
// total for d and returns its write IOPS.
func fioWrites(b *testing.B, files []string, qd int, d time.Duration) float64 {
	cmd := exec.Command("fio", "--name=mirror", "--ioengine=io_uring", "--direct=1",
		"--rw=randwrite", "--bs=4k", fmt.Sprintf("--iodepth=%d", qd),
		"--filename="+strings.Join(files, ":"), fmt.Sprintf("--filesize=%d", benchFileSize),
		"--time_based", fmt.Sprintf("--runtime=%dms", d.Milliseconds()), "--output-format=json")
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("fio: %v", err)
	}
	if i := strings.IndexByte(string(out), '{'); i > 0 {
		out = out[i:] // fio may print notes before the JSON
	}
	var res struct {
		Jobs []struct {
			Write struct {
				IOPS float64 `json:"iops"`
			} `json:"write"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) != 1 {
		b.Fatalf("fio output: %v (%d jobs)", err, len(res.Jobs))
	}
	return res.Jobs[0].Write.IOPS
}
