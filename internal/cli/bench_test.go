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
}
