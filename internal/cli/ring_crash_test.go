package cli

import (
	"bufio"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/testtool"
)

// metric returns the value of the Prometheus sample whose line starts
// with series (name{labels}), or -1 when the engine does not report it.
func (p *engineProc) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return -1
}

// TestNexusRingSurvivesKill writes pipelined batches through a published
// nexus over two thick replicas on io_uring, which puts the NBD connection
// in ring mode (one thread waits for its socket and both children's I/O in
// one io_uring_enter; the engine's metrics must show it), SIGKILLs the
// engine with more pipelined writes in flight, and checks after every
// restart that every flushed write reads back through the nexus, and at
// the end through each replica.
func TestNexusRingSurvivesKill(t *testing.T) {
	cycles := 3
	if testtool.Long() {
		cycles = 20
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk")
	zeroFile(t, img, 128<<20)
	data := filepath.Join(dir, "data")
	e := startEngineProc(t, data)
	e.ok(t, "pool", "create", "p", img, "--cluster-size", "1MiB")
	e.ok(t, "replica", "create", "p", "r1", "--size=16")
	e.ok(t, "replica", "create", "p", "r2", "--size=16")
	e.ok(t, "nexus", "create", "vol", "bdev:///r1", "bdev:///r2")
	e.ok(t, "nexus", "publish", "vol", "--protocol", "nbd")

	const bs, batch = 4096, 32
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	want := map[int64][]byte{}
	// newBatch returns batch distinct random blocks and their new content.
	newBatch := func() ([]int64, [][]byte) {
		offs, bufs := make([]int64, 0, batch), make([][]byte, 0, batch)
		seen := map[int64]bool{}
		for len(offs) < batch {
			blk := rng.Int64N(16 << 20 / bs)
			if seen[blk] {
				continue
			}
			seen[blk] = true
			b := make([]byte, bs)
			fillBlock(b, rng.Uint64())
			offs, bufs = append(offs, blk*bs), append(bufs, b)
		}
		return offs, bufs
	}
	for cycle := 0; cycle < cycles; cycle++ {
		var c *nbdClient
		var err error
		deadline := time.Now().Add(30 * time.Second)
		for c, err = dialNBD(e.nbd, "vol"); err != nil && time.Now().Before(deadline); c, err = dialNBD(e.nbd, "vol") {
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("cycle %d: the nexus is not published after restart: %v", cycle, err)
		}
		verifyBlocks(t, c, want, bs, "nexus")
		for range 8 {
			offs, bufs := newBatch()
			if err := c.writeBatch(offs, bufs); err != nil {
				t.Fatalf("cycle %d: %v", cycle, err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			for i, off := range offs {
				want[off/bs] = bufs[i]
			}
		}
		if n := e.metric(t, `kura_ring_mode_entries_total{frontend="nbd"}`); n < 1 {
			t.Fatalf("cycle %d: pipelined writes to the nexus did not enter ring mode (kura_ring_mode_entries_total %v)", cycle, n)
		}
		// Unflushed pipelined writes in flight when the engine dies, on
		// blocks with no flushed content to keep.
		offs, bufs := newBatch()
		var out []byte
		for i, off := range offs {
			if _, ok := want[off/bs]; ok {
				continue
			}
			c.handle++
			out = append(out, nbdWriteRequest(c.handle, off, bufs[i])...)
		}
		_, _ = c.c.Write(out)
		time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
		e.kill()
		c.c.Close()
		e = startEngineProc(t, data)
	}
	verifyVolume(t, e, want, bs, "r1", "r2")
}
