package benchsuite

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrFioOutput is returned (wrapped) when fio's JSON output cannot be used.
var ErrFioOutput = errors.New("benchsuite: bad fio output")

// Metrics is what one measurement (one fio job, or one kura bench run)
// yields. Latencies are in microseconds.
type Metrics struct {
	IOPS      float64 `json:"iops"`
	BWBytes   float64 `json:"bw_bytes_per_s"`
	LatMeanUs float64 `json:"lat_mean_us"`
	LatP50Us  float64 `json:"lat_p50_us,omitempty"`
	LatP99Us  float64 `json:"lat_p99_us,omitempty"`
	IOs       int64   `json:"ios"`
	RuntimeMs int64   `json:"runtime_ms"`
	// ClientCPUUsPerIO is the load generator's CPU time (user+system) per
	// I/O, in microseconds; 0 when unknown.
	ClientCPUUsPerIO float64 `json:"client_cpu_us_per_io,omitempty"`
	// ServerCPUUsPerIO is the server processes' CPU time per I/O, in
	// microseconds (from /proc/PID/stat); 0 when there is no server.
	ServerCPUUsPerIO float64 `json:"server_cpu_us_per_io,omitempty"`
}

type fioOutput struct {
	Jobs []fioJob `json:"jobs"`
}

type fioJob struct {
	Name    string  `json:"jobname"`
	Error   int     `json:"error"`
	UsrCPU  float64 `json:"usr_cpu"`
	SysCPU  float64 `json:"sys_cpu"`
	Runtime int64   `json:"job_runtime"`
	Read    fioDir  `json:"read"`
	Write   fioDir  `json:"write"`
}

type fioDir struct {
	BWBytes   float64 `json:"bw_bytes"`
	IOPS      float64 `json:"iops"`
	Runtime   int64   `json:"runtime"`
	TotalIOs  int64   `json:"total_ios"`
	LatNs     fioLat  `json:"lat_ns"`
	ClatNs    fioLat  `json:"clat_ns"`
	ShortIOs  int64   `json:"short_ios"`
	DroppedIO int64   `json:"drop_ios"`
}

type fioLat struct {
	Mean       float64            `json:"mean"`
	Percentile map[string]float64 `json:"percentile"`
}

// ParseFio extracts the metrics of the read or the write direction from
// the output of `fio --output-format=json` (one job, or group_reporting).
// Lines before the JSON document (fio's nbd engine prints "fio: connected
// to NBD server" on stdout) are skipped.
func ParseFio(out []byte, write bool) (Metrics, error) {
	start := bytes.Index(out, []byte("\n{"))
	switch {
	case bytes.HasPrefix(out, []byte("{")):
		start = 0
	case start >= 0:
		start++
	default:
		return Metrics{}, fmt.Errorf("%w: no JSON document in %q", ErrFioOutput, trim(out, 200))
	}
	var doc fioOutput
	dec := json.NewDecoder(bytes.NewReader(out[start:]))
	if err := dec.Decode(&doc); err != nil {
		return Metrics{}, fmt.Errorf("%w: %v", ErrFioOutput, err)
	}
	if len(doc.Jobs) == 0 {
		return Metrics{}, fmt.Errorf("%w: no jobs", ErrFioOutput)
	}
	j := doc.Jobs[0]
	if j.Error != 0 {
		return Metrics{}, fmt.Errorf("%w: job %q failed with error %d", ErrFioOutput, j.Name, j.Error)
	}
	d := j.Read
	if write {
		d = j.Write
	}
	if d.TotalIOs == 0 {
		return Metrics{}, fmt.Errorf("%w: job %q did no I/O in the %s direction", ErrFioOutput, j.Name, dirName(write))
	}
	m := Metrics{
		IOPS:      d.IOPS,
		BWBytes:   d.BWBytes,
		LatMeanUs: d.LatNs.Mean / 1e3,
		LatP50Us:  percentile(d.ClatNs.Percentile, 50) / 1e3,
		LatP99Us:  percentile(d.ClatNs.Percentile, 99) / 1e3,
		IOs:       d.TotalIOs,
		RuntimeMs: d.Runtime,
	}
	rt := j.Runtime
	if rt == 0 {
		rt = d.Runtime
	}
	if rt > 0 {
		cpu := (j.UsrCPU + j.SysCPU) / 100 * float64(time.Duration(rt)*time.Millisecond/time.Microsecond)
		m.ClientCPUUsPerIO = cpu / float64(d.TotalIOs)
	}
	return m, nil
}

// percentile finds fio's percentile key ("99.000000") for p.
func percentile(ps map[string]float64, p float64) float64 {
	for k, v := range ps {
		if f, err := strconv.ParseFloat(k, 64); err == nil && f == p {
			return v
		}
	}
	return 0
}

func dirName(write bool) string {
	if write {
		return "write"
	}
	return "read"
}

func trim(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
