package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvmetcp"
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

// startThickNexus starts an engine on dataDir with pool p on a fresh
// 128 MiB file beside it (a bare path: io_uring where the kernel allows),
// thick 16 MiB replicas r1 and r2, and nexus vol over them.
func startThickNexus(t *testing.T, dataDir string) *engineProc {
	t.Helper()
	img := filepath.Join(filepath.Dir(dataDir), "disk")
	zeroFile(t, img, 128<<20)
	e := startEngineProc(t, dataDir)
	e.ok(t, "pool", "create", "p", img, "--cluster-size", "1MiB")
	e.ok(t, "replica", "create", "p", "r1", "--size=16")
	e.ok(t, "replica", "create", "p", "r2", "--size=16")
	e.ok(t, "nexus", "create", "vol", "bdev:///r1", "bdev:///r2")
	return e
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
	data := filepath.Join(t.TempDir(), "data")
	e := startThickNexus(t, data)
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

// TestNexusNVMfRingMode: a nexus over two thick replicas on io_uring,
// published over NVMe/TCP, serves a pipelining host (Kura's initiator,
// 32 concurrent writers and readers) through ring mode with every byte
// right: the engine's metrics show the I/O queues entered it.
func TestNexusNVMfRingMode(t *testing.T) {
	e := startThickNexus(t, filepath.Join(t.TempDir(), "data"))
	uri := strings.TrimSpace(e.ok(t, "nexus", "publish", "vol", "--protocol", "nvmf", "--allow-any-host"))
	if i := strings.Index(uri, "nvmf://"); i >= 0 {
		uri = strings.Fields(uri[i:])[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reg := blockdev.NewRegistry()
	nvmetcp.RegisterScheme(reg)
	dev, err := reg.Open(ctx, uri)
	if err != nil {
		t.Fatalf("open %s: %v", uri, err)
	}
	defer dev.Close()
	const bs, workers, rounds = 4096, 32, 60
	region := dev.Size() / workers
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 5))
			buf, got := make([]byte, 4*bs), make([]byte, 4*bs)
			for range rounds {
				n := (1 + rng.IntN(4)) * bs
				off := int64(w)*region + rng.Int64N(region/bs-4)*bs
				fillBlock(buf[:n], rng.Uint64())
				if _, err := dev.WriteAt(buf[:n], off); err != nil {
					errs <- err
					return
				}
				if _, err := dev.ReadAt(got[:n], off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got[:n], buf[:n]) {
					errs <- fmt.Errorf("worker %d: %d bytes at %d read back wrong", w, n, off)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := e.metric(t, `kura_ring_mode_entries_total{frontend="nvmf"}`); n < 1 {
		t.Fatalf("a pipelining host did not put an I/O queue of the nexus into ring mode (kura_ring_mode_entries_total %v)", n)
	}
}
