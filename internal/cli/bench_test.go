package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchNVMf runs `kura bench` against a replica shared over NVMe/TCP.
func TestBenchNVMf(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk")
	zeroFile(t, img, 64<<20)
	e := startEngineProc(t, filepath.Join(dir, "data"))
	e.ok(t, "pool", "create", "p", img)
	e.ok(t, "replica", "create", "p", "r1", "--size=16")
	const host = "nqn.2019-05.io.kura:bench-host"
	uri := strings.TrimSpace(e.ok(t, "replica", "share", "p", "r1", "--allowed-host", host))
	// A host that is not on the allow-list is refused at Connect.
	e.fails(t, "", "bench", uri, "--time", "200ms")
	e.fails(t, "allowed host", "replica", "share", "p", "r1") // empty allow-list: refused
	uri += "?hostnqn=" + host
	out := e.ok(t, "bench", uri, "--rw", "randrw", "--time", "500ms", "--qd", "8", "-o", "json")
	var res struct {
		Ops    uint64  `json:"ops"`
		Errors uint64  `json:"errors"`
		IOPS   float64 `json:"iops"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Ops == 0 || res.Errors != 0 || res.IOPS <= 0 {
		t.Fatalf("bench result %+v", res)
	}
	e.fails(t, "unknown URI scheme", "bench", "foo:///x", "--time", "100ms")

	// --queues opens that many I/O queues and reports what was granted.
	out = e.ok(t, "bench", uri, "--queues", "3", "--time", "200ms", "--qd", "6", "-o", "json")
	var q struct {
		IOQueues int    `json:"io_queues"`
		Errors   uint64 `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &q); err != nil || q.IOQueues != 3 || q.Errors != 0 {
		t.Fatalf("--queues 3: %+v %v: %s", q, err, out)
	}
	if out := e.ok(t, "bench", uri, "--queues", "1", "--time", "100ms"); !strings.Contains(out, "io-queues=1") {
		t.Fatalf("table output without the queue count: %s", out)
	}
}

func TestBenchQueuesURI(t *testing.T) {
	for _, c := range []struct {
		uri  string
		n    int
		want string // "" = error
	}{
		{"nvmf://h:1/nqn.2019-05.io.kura:x", 0, "nvmf://h:1/nqn.2019-05.io.kura:x"},
		{"nvmf://h:1/nqn.2019-05.io.kura:x", 4, "nvmf://h:1/nqn.2019-05.io.kura:x?nr_io_queues=4"},
		{"nvmf://h:1/nqn.2019-05.io.kura:x?hostnqn=nqn.2019-05.io.kura:h", 2, "nvmf://h:1/nqn.2019-05.io.kura:x?hostnqn=nqn.2019-05.io.kura%3Ah&nr_io_queues=2"},
		{"nvmf://h:1/nqn.2019-05.io.kura:x?nr_io_queues=2", 2, "nvmf://h:1/nqn.2019-05.io.kura:x?nr_io_queues=2"},
		{"nvmf://h:1/nqn.2019-05.io.kura:x?nr_io_queues=2", 3, ""},
		{"uring:///dev/x", 2, ""},
		{"nvmf://h:1/nqn.2019-05.io.kura:x", -1, ""},
	} {
		got, err := withQueues(c.uri, c.n)
		if c.want == "" && err == nil || c.want != "" && (err != nil || got != c.want) {
			t.Errorf("withQueues(%q, %d) = %q, %v; want %q", c.uri, c.n, got, err, c.want)
		}
	}
}
