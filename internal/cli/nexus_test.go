package cli

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestNexusCLI mirrors two replicas into a nexus, publishes it over NBD,
// writes through it, takes a child offline and back, and checks the data
// on each replica through its own share.
func TestNexusCLI(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk")
	zeroFile(t, img, 128<<20)
	e := startEngineProc(t, filepath.Join(dir, "data"))
	e.ok(t, "pool", "create", "p", img, "--cluster-size", "1MiB")
	e.ok(t, "replica", "create", "p", "r1", "--size=16", "--thin")
	e.ok(t, "replica", "create", "p", "r2", "--size=16", "--thin")
	e.ok(t, "nexus", "create", "vol1", "bdev:///r1", "bdev:///r2")
	uri := strings.TrimSpace(e.ok(t, "nexus", "publish", "vol1", "--protocol", "nbd"))
	if uri != "nbd://"+e.nbd+"/vol1" {
		t.Fatalf("publish printed %q", uri)
	}
	list := e.ok(t, "nexus", "list")
	if !strings.Contains(list, "vol1                     16.0 MiB online            2   "+uri) {
		t.Fatalf("nexus list:\n%s", list)
	}
	e.fails(t, "in use", "replica", "destroy", "p", "r1")

	c, err := dialNBD(e.nbd, "vol1")
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{0xA5}, 64<<10)
	if err := c.WriteAt(buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	e.ok(t, "nexus", "child", "offline", "vol1", "bdev:///r2")
	if got := e.ok(t, "nexus", "children", "vol1"); !strings.Contains(got, "offline") {
		t.Fatalf("children:\n%s", got)
	}
	if got := e.ok(t, "nexus", "list"); !strings.Contains(got, "degraded") || !regexp.MustCompile(`(?m)^  - bdev:///r2 +offline`).MatchString(got) {
		t.Fatalf("nexus list does not show the offline child:\n%s", got)
	}
	buf2 := bytes.Repeat([]byte{0x5A}, 64<<10)
	if err := c.WriteAt(buf2, 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	e.ok(t, "nexus", "online", "vol1", "bdev:///r2")
	deadline := time.Now().Add(20 * time.Second)
	for !regexp.MustCompile(`(?m)^vol1 .* online `).MatchString(e.ok(t, "nexus", "list")) {
		if time.Now().After(deadline) {
			t.Fatal("nexus did not come back online")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Close()
	if got := e.ok(t, "rebuild", "history", "vol1"); !strings.Contains(got, "bdev:///r2") || !strings.Contains(got, "completed") || !strings.Contains(got, "partial") {
		t.Fatalf("rebuild history:\n%s", got)
	}
	if got := e.ok(t, "nexus", "snapshot", "vol1", "s1"); !strings.Contains(got, "p/s1-r1") || !strings.Contains(got, "p/s1-r2") {
		t.Fatalf("nexus snapshot printed:\n%s", got)
	}
	if got := e.ok(t, "snapshot", "list"); !strings.Contains(got, "s1-r1") {
		t.Fatalf("snapshot list:\n%s", got)
	}
	e.ok(t, "snapshot", "destroy", "p", "s1-r1")
	e.ok(t, "snapshot", "destroy", "p", "s1-r2")
	e.ok(t, "nexus", "destroy", "vol1")
	// Both replicas hold both writes.
	for _, r := range []string{"r1", "r2"} {
		e.ok(t, "replica", "share", "p", r, "--protocol", "nbd")
		rc, err := dialNBD(e.nbd, r)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 64<<10)
		if err := rc.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, buf) {
			t.Fatalf("%s: first write not mirrored (%v)", r, err)
		}
		if err := rc.ReadAt(got, 4<<20); err != nil || !bytes.Equal(got, buf2) {
			t.Fatalf("%s: write while r2 was offline not there (%v)", r, err)
		}
		rc.Close()
	}
}
