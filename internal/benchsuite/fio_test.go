package benchsuite

import (
	"errors"
	"math"
	"os"
	"testing"
)

func TestParseFioNBD(t *testing.T) {
	out, err := os.ReadFile("testdata/fio-nbd-randread.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseFio(out, false)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(m.IOPS-31925.037481) > 1e-6 {
		t.Errorf("IOPS = %v", m.IOPS)
	}
	if m.IOs != 63882 || m.RuntimeMs != 2001 {
		t.Errorf("IOs/runtime = %d/%d", m.IOs, m.RuntimeMs)
	}
	if math.Abs(m.LatMeanUs-1001.777603597) > 1e-6 {
		t.Errorf("mean latency = %v µs", m.LatMeanUs)
	}
	if m.LatP99Us <= m.LatP50Us || m.LatP50Us <= 0 {
		t.Errorf("percentiles p50=%v p99=%v", m.LatP50Us, m.LatP99Us)
	}
	if m.BWBytes != 130764953 {
		t.Errorf("bw = %v", m.BWBytes)
	}
	// (7.8+22.35)% of 2001 ms over 63882 I/Os.
	want := 0.3015 * 2001e3 / 63882
	if math.Abs(m.ClientCPUUsPerIO-want) > 0.01 {
		t.Errorf("client CPU/IO = %v, want %v", m.ClientCPUUsPerIO, want)
	}
	if _, err := ParseFio(out, true); !errors.Is(err, ErrFioOutput) {
		t.Errorf("write direction of a read job: err = %v, want ErrFioOutput", err)
	}
}

func TestParseFioErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":     "",
		"noJSON":    "fio: something went wrong\n",
		"truncated": "{\"jobs\": [",
		"noJobs":    `{"jobs": []}`,
		"jobError":  `{"jobs": [{"jobname": "x", "error": 5, "read": {"total_ios": 10}}]}`,
	} {
		if _, err := ParseFio([]byte(in), false); !errors.Is(err, ErrFioOutput) {
			t.Errorf("%s: err = %v, want ErrFioOutput", name, err)
		}
	}
	m, err := ParseFio([]byte(`{"jobs":[{"jobname":"w","write":{"iops":10,"total_ios":20,"runtime":2000,"lat_ns":{"mean":5000}}}]}`), true)
	if err != nil || m.IOPS != 10 || m.LatMeanUs != 5 {
		t.Errorf("minimal write job: %+v, %v", m, err)
	}
}

func TestParseKuraBench(t *testing.T) {
	out := []byte(`{
  "block_size": 4096, "elapsed_ns": 2000000000, "errors": 0, "iops": 18700.5,
  "lat_mean_ns": 1707100, "lat_p50_ns": 1500000, "lat_p99_ns": 4000000, "mbps": 76.6,
  "ops": 37401, "cpu_per_io_ns": 21500, "queue_depth": 32, "rw": "randread", "uri": "nvmf://x"
}`)
	m, err := ParseKuraBench(out)
	if err != nil {
		t.Fatal(err)
	}
	if m.IOPS != 18700.5 || m.LatMeanUs != 1707.1 || m.LatP99Us != 4000 || m.BWBytes != 76.6e6 || m.IOs != 37401 || m.ClientCPUUsPerIO != 21.5 || m.RuntimeMs != 2000 {
		t.Errorf("%+v", m)
	}
	for _, bad := range []string{"", "kura: boom", `{"ops": 0}`, `{"ops": 5, "errors": 1}`} {
		if _, err := ParseKuraBench([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
