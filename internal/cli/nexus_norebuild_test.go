package cli

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestNexusAddNoRebuildCLI: `nexus child add --norebuild` adds a child out
// of sync (listed so, nexus degraded, no rebuild), it stays so across an
// engine restart, `rebuild start` rebuilds it, and afterwards it holds the
// same bytes as the other children.
func TestNexusAddNoRebuildCLI(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk")
	zeroFile(t, img, 128<<20)
	data := filepath.Join(dir, "data")
	e := startEngineProc(t, data)
	e.ok(t, "pool", "create", "p", img, "--cluster-size", "1MiB")
	for _, r := range []string{"r1", "r2", "r3"} {
		e.ok(t, "replica", "create", "p", r, "--size=16", "--thin")
	}
	e.ok(t, "nexus", "create", "vol1", "bdev:///r1", "bdev:///r2")
	e.ok(t, "nexus", "publish", "vol1", "--protocol", "nbd")
	write := func(e *engineProc, b byte, off int64) {
		t.Helper()
		c, err := dialNBD(e.nbd, "vol1")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.WriteAt(bytes.Repeat([]byte{b}, 256<<10), off); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	write(e, 0xA1, 1<<20)

	if got := e.ok(t, "nexus", "child", "add", "--help"); !strings.Contains(got, "--norebuild") {
		t.Fatalf("nexus child add --help lacks --norebuild:\n%s", got)
	}
	e.ok(t, "nexus", "child", "add", "vol1", "bdev:///r3", "--norebuild")
	outOfSync := regexp.MustCompile(`(?m)^  - bdev:///r3 +out-of-sync \(added without rebuild: rebuild not started\)$`)
	checkOutOfSync := func(e *engineProc, when string) {
		t.Helper()
		list := e.ok(t, "nexus", "list")
		if !outOfSync.MatchString(list) || !regexp.MustCompile(`(?m)^vol1 .* degraded +3 `).MatchString(list) {
			t.Fatalf("%s: nexus list does not show r3 out of sync in a degraded nexus:\n%s", when, list)
		}
		if got := e.ok(t, "nexus", "children", "vol1"); !regexp.MustCompile(`(?m)^bdev:///r3 +out-of-sync +- +added without rebuild`).MatchString(got) {
			t.Fatalf("%s: nexus children:\n%s", when, got)
		}
		e.fails(t, "no rebuild running", "rebuild", "progress", "vol1", "bdev:///r3")
	}
	checkOutOfSync(e, "after add")
	write(e, 0xB2, 4<<20) // not sent to r3

	e.fails(t, "healthy", "rebuild", "start", "vol1", "bdev:///r1")
	e.fails(t, "no such child", "rebuild", "start", "vol1", "bdev:///nope")
	e.fails(t, "not found", "rebuild", "start", "nope", "bdev:///r3")
	// The top-level verb takes the flag too.
	e.fails(t, "already exists", "nexus", "add", "vol1", "bdev:///r3", "--norebuild")

	// Restart: still out of sync.
	e.stop(t)
	e = startEngineProc(t, data)
	checkOutOfSync(e, "after restart")
	write(e, 0xC3, 8<<20)

	e.ok(t, "rebuild", "start", "vol1", "bdev:///r3")
	deadline := time.Now().Add(30 * time.Second)
	for !regexp.MustCompile(`(?m)^vol1 .* online `).MatchString(e.ok(t, "nexus", "list")) {
		if time.Now().After(deadline) {
			t.Fatalf("nexus not online after rebuild start:\n%s", e.ok(t, "nexus", "list"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := e.ok(t, "rebuild", "history", "vol1"); !regexp.MustCompile(`(?m)^bdev:///r3 +completed +full `).MatchString(got) {
		t.Fatalf("rebuild history:\n%s", got)
	}
	e.fails(t, "healthy (in sync)", "rebuild", "start", "vol1", "bdev:///r3")
	write(e, 0xD4, 12<<20)
	e.ok(t, "nexus", "destroy", "vol1")

	// r3 holds exactly what r1 holds.
	read := func(r string) []byte {
		t.Helper()
		e.ok(t, "replica", "share", "p", r, "--protocol", "nbd")
		c, err := dialNBD(e.nbd, r)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b := make([]byte, 16<<20)
		for off := 0; off < len(b); off += 1 << 20 {
			if err := c.ReadAt(b[off:off+1<<20], int64(off)); err != nil {
				t.Fatal(err)
			}
		}
		return b
	}
	r1, r3 := read("r1"), read("r3")
	for _, w := range []struct {
		b   byte
		off int
	}{{0xA1, 1 << 20}, {0xB2, 4 << 20}, {0xC3, 8 << 20}, {0xD4, 12 << 20}} {
		if !bytes.Equal(r1[w.off:w.off+256<<10], bytes.Repeat([]byte{w.b}, 256<<10)) {
			t.Fatalf("r1 lacks the write at %d", w.off)
		}
	}
	if !bytes.Equal(r1, r3) {
		t.Fatal("r3 differs from r1 after the rebuild")
	}
}
