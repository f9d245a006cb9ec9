package cli

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSeedClientSession runs the client session of the seed README
// (section "Client") with kura in place of mayastor-client, on a loop
// device when losetup works (else on the file), and checks the output
// exactly.
func TestSeedClientSession(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk")
	zeroFile(t, img, 100<<20) // dd if=/dev/zero of=/tmp/disk bs=1024 count=102400
	disk := loopDevice(t, img)
	if disk == "" {
		disk = img
	}
	e := startEngineProc(t, filepath.Join(dir, "data"))

	if out := e.ok(t, "pool", "create", "tpool", disk); out != "" {
		t.Fatalf("pool create printed %q", out)
	}
	wantPools := "" +
		"NAME                 STATE        CAPACITY         USED   DISKS\n" +
		"tpool                online       96.0 MiB          0 B   " + disk + "\n"
	if got := e.ok(t, "pool", "list"); got != wantPools {
		t.Fatalf("pool list:\n%s\nwant:\n%s", got, wantPools)
	}
	e.ok(t, "replica", "create", "tpool", "replica1", "--size=10")
	// The seed creates a 1000 MiB thin replica in a 96 MiB pool: thin
	// replicas may be larger than the pool (overcommit).
	if _, errOut, code := e.kura(t, "replica", "create", "tpool", "replica2", "--size=1000", "--thin"); code != 0 {
		t.Fatalf("the seed session needs thin overcommit (a 1000 MiB thin replica in a 96 MiB pool), "+
			"which internal/pool refuses (Pool.checkSize): %s", errOut)
	}
	wantReplicas := "" +
		"POOL                 NAME                 THIN           SIZE     ALLOCATED\n" +
		"tpool                replica1             false       10.0 MiB     12.0 MiB\n" +
		"tpool                replica2             true         1.0 GiB          0 B\n"
	if got := e.ok(t, "replica", "list"); got != wantReplicas {
		t.Fatalf("replica list:\n%s\nwant:\n%s", got, wantReplicas)
	}

	// -o json for scripts.
	var rl struct {
		Replicas []struct {
			Name string `json:"name"`
			Thin bool   `json:"thin"`
			Size string `json:"size"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal([]byte(e.ok(t, "replica", "list", "-o", "json")), &rl); err != nil {
		t.Fatal(err)
	}
	if len(rl.Replicas) != 2 || rl.Replicas[1].Name != "replica2" || !rl.Replicas[1].Thin || rl.Replicas[1].Size != "1048576000" {
		t.Fatalf("replica list -o json = %+v", rl)
	}

	e.ok(t, "replica", "destroy", "tpool", "replica1")
	e.ok(t, "replica", "destroy", "tpool", "replica2")
	if got := e.ok(t, "replica", "list"); got != "No replicas have been created\n" {
		t.Fatalf("empty replica list: %q", got)
	}
	e.ok(t, "pool", "destroy", "tpool")
	if got := e.ok(t, "pool", "list"); got != "No pools have been created\n" {
		t.Fatalf("empty pool list: %q", got)
	}
}

// TestCLIErrors checks that bad input gives one clear line, a non-zero exit
// and changes nothing.
func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk")
	zeroFile(t, img, 100<<20)
	e := startEngineProc(t, filepath.Join(dir, "data"))
	e.ok(t, "pool", "create", "tpool", img)
	e.ok(t, "replica", "create", "tpool", "r1", "--size=8")

	e.fails(t, `pool "nope" not found`, "pool", "destroy", "nope")
	e.fails(t, `pool "nope" not found`, "replica", "create", "nope", "r2", "--size=8")
	e.fails(t, `is in use by pool "tpool"`, "pool", "create", "other", img)
	e.fails(t, `unknown URI scheme`, "pool", "create", "other", "foo:///bar")
	e.fails(t, `unknown parameter(s) colour`, "bdev", "create", "malloc:///m0?size_mb=8&colour=red")
	e.fails(t, `invalid size "ten"`, "replica", "create", "tpool", "r2", "--size=ten")
	e.fails(t, `NQN`, "replica", "share", "tpool", "r1", "--allowed-host", "not-an-nqn")
	e.fails(t, `replica "nope" not found`, "replica", "destroy", "tpool", "nope")
	// A second engine on the same data directory refuses to start.
	e.fails(t, "is in use by another engine", "engine", "--data-dir", filepath.Join(dir, "data"),
		"--grpc", freeAddr(t), "--nbd", freeAddr(t), "--nvmf", freeAddr(t))

	want := "" +
		"POOL                 NAME                 THIN           SIZE     ALLOCATED\n" +
		"tpool                r1                   false        8.0 MiB      8.0 MiB\n"
	if got := e.ok(t, "replica", "list"); got != want {
		t.Fatalf("replica list after errors:\n%s\nwant:\n%s", got, want)
	}
	if got := e.ok(t, "bdev", "list"); got != "No bdevs have been created\n" {
		t.Fatalf("bdev list after errors: %q", got)
	}
	if got := e.ok(t, "pool", "list"); strings.Count(got, "\n") != 2 {
		t.Fatalf("pool list after errors:\n%s", got)
	}

	// Snapshots and clones.
	e.ok(t, "snapshot", "create", "tpool", "r1", "s1")
	e.ok(t, "snapshot", "clone", "tpool", "s1", "c1")
	if got := e.ok(t, "snapshot", "list"); !regexp.MustCompile(`(?m)^tpool +s1 +r1 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +8\.0 MiB +\S+ \S+ +\S+ \S+ +c1$`).MatchString(got) {
		t.Fatalf("snapshot list:\n%s", got)
	}
	e.fails(t, "", "snapshot", "destroy", "tpool", "s1")
	e.ok(t, "snapshot", "destroy", "tpool", "s1", "--force")
	if got := e.ok(t, "snapshot", "list"); got != "No snapshots have been created\n" {
		t.Fatalf("snapshot list after destroy: %q", got)
	}
}

// TestRestartReimportsPoolsAndShares stops the engine (SIGTERM) and starts
// a new one on the same data directory: pools, replicas, bdevs and shares
// with their allow-lists come back without being told.
func TestRestartReimportsPoolsAndShares(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk")
	zeroFile(t, img, 100<<20)
	data := filepath.Join(dir, "data")
	e := startEngineProc(t, data)
	e.ok(t, "pool", "create", "tpool", img)
	e.ok(t, "replica", "create", "tpool", "r1", "--size=8")
	e.ok(t, "replica", "create", "tpool", "r2", "--size=16", "--thin")
	uri := strings.TrimSpace(e.ok(t, "replica", "share", "tpool", "r1", "--protocol", "nbd", "--allowed-host", "127.0.0.1"))
	if !strings.HasPrefix(uri, "nbd://") || !strings.HasSuffix(uri, "/r1") {
		t.Fatalf("share URI %q", uri)
	}
	const hostNQN = "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	nvmfURI := strings.TrimSpace(e.ok(t, "replica", "share", "tpool", "r2", "--allowed-host", hostNQN))
	if !strings.HasPrefix(nvmfURI, "nvmf://") || !strings.HasSuffix(nvmfURI, "/nqn.2019-05.io.kura:r2") {
		t.Fatalf("nvmf share URI %q", nvmfURI)
	}
	if got := e.ok(t, "bdev", "create", "malloc:///m0?size_mb=8"); got != "m0\n" {
		t.Fatalf("bdev create printed %q", got)
	}
	if got := e.ok(t, "bdev", "share", "m0", "--protocol", "nbd"); got != "nbd://"+e.nbd+"/m0\n" {
		t.Fatalf("bdev share printed %q", got)
	}
	before := e.ok(t, "replica", "list", "-o", "json")
	e.stop(t)

	// Same ports are not guaranteed, so compare everything but the URIs'
	// host:port.
	e2 := startEngineProc(t, data)
	after := e2.ok(t, "replica", "list", "-o", "json")
	norm := func(s string, p *engineProc) string {
		s = strings.ReplaceAll(s, p.nbd, "NBD")
		return strings.ReplaceAll(s, p.nvmf, "NVMF")
	}
	if norm(before, e) != norm(after, e2) {
		t.Fatalf("replicas after restart:\n%s\nbefore:\n%s", after, before)
	}
	var rl struct {
		Replicas []struct {
			Name  string `json:"name"`
			Share *struct {
				Protocol     string   `json:"protocol"`
				AllowedHosts []string `json:"allowed_hosts"`
				AllowAnyHost bool     `json:"allow_any_host"`
			} `json:"share"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal([]byte(after), &rl); err != nil {
		t.Fatal(err)
	}
	if len(rl.Replicas) != 2 || rl.Replicas[0].Share == nil || rl.Replicas[1].Share == nil {
		t.Fatalf("shares after restart: %s", after)
	}
	if s := rl.Replicas[0].Share; s.Protocol != "SHARE_PROTOCOL_NBD" || len(s.AllowedHosts) != 1 || s.AllowedHosts[0] != "127.0.0.1" || s.AllowAnyHost {
		t.Fatalf("r1 share after restart: %+v", s)
	}
	if s := rl.Replicas[1].Share; s.Protocol != "SHARE_PROTOCOL_NVMF" || len(s.AllowedHosts) != 1 || s.AllowedHosts[0] != hostNQN || s.AllowAnyHost {
		t.Fatalf("r2 share after restart: %+v", s)
	}
	wantBdevs := "" +
		"NAME                         SIZE  BLKSZ SHARE URI\n" +
		"m0                        8.0 MiB    512 nbd   nbd://" + e2.nbd + "/m0\n"
	if got := e2.ok(t, "bdev", "list"); got != wantBdevs {
		t.Fatalf("bdev list after restart:\n%s\nwant:\n%s", got, wantBdevs)
	}
	e2.ok(t, "bdev", "destroy", "m0")
	if got := e2.ok(t, "bdev", "list"); got != "No bdevs have been created\n" {
		t.Fatalf("bdev list after destroy: %q", got)
	}
	if got := e2.ok(t, "pool", "list"); !strings.Contains(got, "tpool                online") {
		t.Fatalf("pool list after restart:\n%s", got)
	}
}

// TestLoopDeviceAndBackingFileAreOneDisk: a pool on a loop device makes its
// backing file "in use", and the reverse.
func TestLoopDeviceAndBackingFileAreOneDisk(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk")
	zeroFile(t, img, 100<<20)
	loop := loopDevice(t, img)
	if loop == "" {
		t.Skip("no loop device")
	}
	e := startEngineProc(t, filepath.Join(dir, "data"))
	e.ok(t, "pool", "create", "tpool", loop)
	e.fails(t, `is in use by pool "tpool"`, "pool", "create", "other", img)
	e.fails(t, `is in use by pool "tpool"`, "bdev", "create", img)
	if got := e.ok(t, "host", "info"); !strings.Contains(got, `pool "tpool"`) {
		t.Fatalf("host info does not show the loop device in use:\n%s", got)
	}
}
