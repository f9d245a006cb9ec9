package cli

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/testtool"
)

// TestNexusSurvivesKill writes through a published nexus over two
// replicas, SIGKILLs the engine, and checks that the restarted engine
// re-creates and re-publishes the nexus by itself, that every flushed write
// reads back through it, and that both replicas end up identical.
func TestNexusSurvivesKill(t *testing.T) {
	cycles := 4
	if testtool.Long() {
		cycles = 30
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk")
	zeroFile(t, img, 128<<20)
	data := filepath.Join(dir, "data")
	e := startEngineProc(t, data)
	e.ok(t, "pool", "create", "p", img, "--cluster-size", "1MiB")
	e.ok(t, "replica", "create", "p", "r1", "--size=16", "--thin")
	e.ok(t, "replica", "create", "p", "r2", "--size=16", "--thin")
	e.ok(t, "nexus", "create", "vol", "bdev:///r1", "bdev:///r2")
	e.ok(t, "nexus", "publish", "vol", "--protocol", "nbd")

	const bs = 4096
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	want := map[int64][]byte{}
	waitOnline := func(p *engineProc) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			out := p.ok(t, "nexus", "list")
			if strings.Contains(out, " online ") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("nexus not online:\n%s\n%s", out, p.ok(t, "nexus", "children", "vol"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	verify := func(c *nbdClient, what string) {
		t.Helper()
		verifyBlocks(t, c, want, bs, what)
	}
	for cycle := 0; cycle < cycles; cycle++ {
		c, err := dialNBD(e.nbd, "vol")
		if err != nil {
			t.Fatalf("cycle %d: the nexus is not published after restart: %v", cycle, err)
		}
		verify(c, "nexus")
		for i := 0; i < 32; i++ {
			blk := rng.Int64N(16 << 20 / bs)
			b := make([]byte, bs)
			fillBlock(b, rng.Uint64())
			if err := c.WriteAt(b, blk*bs); err != nil {
				t.Fatal(err)
			}
			want[blk] = b
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		// Unflushed writes in flight when the engine dies.
		for i := 0; i < 8; i++ {
			blk := rng.Int64N(16 << 20 / bs)
			if _, ok := want[blk]; ok {
				continue
			}
			b := make([]byte, bs)
			fillBlock(b, rng.Uint64())
			_ = c.request(nbdCmdWrite, uint64(blk*bs), bs, b)
		}
		e.kill()
		c.c.Close()
		e = startEngineProc(t, data)
		waitOnline(e)
	}
	verifyVolume(t, e, want, bs, "r1", "r2")
}

// verifyBlocks checks that every block of want reads back through c.
func verifyBlocks(t *testing.T, c *nbdClient, want map[int64][]byte, bs int, what string) {
	t.Helper()
	got := make([]byte, bs)
	for blk, b := range want {
		if err := c.ReadAt(got, blk*int64(bs)); err != nil {
			t.Fatalf("%s: read block %d: %v", what, blk, err)
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("%s: block %d does not hold the flushed data", what, blk)
		}
	}
}

// verifyVolume checks want through the published nexus "vol" of pool p,
// destroys the nexus, and checks want on each of its replicas, shared
// over NBD.
func verifyVolume(t *testing.T, e *engineProc, want map[int64][]byte, bs int, replicas ...string) {
	t.Helper()
	c, err := dialNBD(e.nbd, "vol")
	if err != nil {
		t.Fatal(err)
	}
	verifyBlocks(t, c, want, bs, "nexus")
	c.Close()
	e.ok(t, "nexus", "destroy", "vol")
	for _, r := range replicas {
		e.ok(t, "replica", "share", "p", r, "--protocol", "nbd")
		rc, err := dialNBD(e.nbd, r)
		if err != nil {
			t.Fatal(err)
		}
		verifyBlocks(t, rc, want, bs, r)
		rc.Close()
	}
}
