package fault_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/nvmetcp"
	"github.com/kura-io/kura/internal/testtool"
)

const (
	blockSize   = 4096
	volMiB      = 32
	volBlocks   = volMiB << 20 / blockSize
	nWriters    = 8
	nReaders    = 2
	flushEvery  = 24               // writes per writer between flushes
	maxWriteBlk = 8                // largest write, in blocks
	opTimeout   = 90 * time.Second // NBD round trip; the nexus child timeout is 30 s
	// maxStall bounds any one I/O while B dies: the engine's nexus child
	// timeout (nexus.DefaultChildTimeout, 30 s, also the NVMe/TCP
	// initiator's reconnect timeout) plus the watchdog's scan period.
	// childTimeout is the engines' nexus child timeout (--child-timeout):
	// a remote child that stops answering is faulted after it.
	childTimeout = 3 * time.Second
	// maxStall bounds any client I/O: the child timeout plus slack for a
	// loaded 2-core machine.
	maxStall = childTimeout + 5*time.Second
)

// TestRemoteReplicaKilledMidWrite is the nexus issue's "a real remote
// engine killed mid-write": engine A serves a nexus over a local replica
// (bdev:///rA) and a replica on engine B reached over NVMe/TCP; verifying
// writers write and flush through the nexus' NBD export while B is
// SIGKILLed at a random moment. No write or flush may fail, the nexus must
// go degraded with the remote child faulted, and every acknowledged write
// must read back. B is then restarted on the same data directory (its pool
// and share come back by themselves), the child is onlined while the
// writers keep going, and once the rebuild is done the nexus must be online
// with both replicas, read through their own exports, byte-identical and
// holding exactly the acknowledged data. In cycle 2 and in a random third
// of the others B is killed a second time right after the online, i.e.
// while (or just after) its replica is rebuilt, and brought back again.
// 3 cycles, 20 with KURA_LONG=1;
// KURA_FAULT_SEED=N replays a seed.
func TestRemoteReplicaKilledMidWrite(t *testing.T) {
	cycles := 3
	if testtool.Long() {
		cycles = 20
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KURA_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KURA_FAULT_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (KURA_FAULT_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	c := newCluster(t)
	a, b, local, remote, nex, reb := c.a, c.b, c.local, c.remote, c.nex, c.reb
	m := newModel()
	for cycle := 1; cycle <= cycles; cycle++ {
		t.Logf("cycle %d/%d", cycle, cycles)
		start := time.Now()

		// 1. Writers run; B is SIGKILLed at a random moment mid-write.
		w := startWriters(t, a.nbd, m, rng.Uint64())
		time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond)
		writesBefore := w.writes.Load()
		b.kill()
		killed := time.Now()
		deg := waitNexus(t, nex, "degraded with the remote child faulted", 45*time.Second, func(n *enginev1.Nexus) bool {
			return n.GetState() == enginev1.NexusState_NEXUS_STATE_DEGRADED &&
				childState(n, remote) == enginev1.ChildState_CHILD_STATE_FAULTED &&
				childState(n, local) == enginev1.ChildState_CHILD_STATE_ONLINE
		})
		faultedAfter := time.Since(killed)
		checkCLIDegraded(t, a, local, remote)
		// Keep writing on the local child alone for a moment.
		time.Sleep(200 * time.Millisecond)
		w.stop(t, "while B was killed")
		if writesBefore == 0 || w.writes.Load() == writesBefore {
			t.Fatalf("cycle %d: writes before the kill %d, in all %d: the kill was not mid-write", cycle, writesBefore, w.writes.Load())
		}
		t.Logf("cycle %d: killed B after %d writes; remote child faulted (%q) within %v; %d writes, %d flushes, %d reads acknowledged, slowest I/O %v",
			cycle, writesBefore, childReason(deg, remote), faultedAfter.Round(time.Millisecond), w.writes.Load(), w.flushes.Load(), w.reads.Load(), w.slowest())
		if d := time.Duration(w.maxLat.Load()); d > maxStall {
			t.Fatalf("cycle %d: an I/O took %v while B died (bound %v)", cycle, d, maxStall)
		} else if d > 5*time.Second {
			t.Logf("cycle %d: NOTE: I/O stalled %v: no command was in flight to B when it died, so the initiator waited for a reconnect until its timeout", cycle, d.Round(time.Millisecond))
		}
		m.verifyExport(t, a.nbd, "vol", fmt.Sprintf("cycle %d: nexus, degraded", cycle))

		// 2. B comes back on the same directory and ports; online the
		// child and rebuild it while the writers keep going.
		b.restart(t)
		w = startWriters(t, a.nbd, m, rng.Uint64())
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		onlineChild(t, a, remote)
		if cycle == 2 || rng.IntN(3) == 0 {
			// Kill B again while (or just after) it is rebuilt: the
			// rebuild fails, the child is faulted again, and the next
			// online must still produce an identical mirror.
			time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
			before := waitNexus(t, nex, "listed", time.Second, func(*enginev1.Nexus) bool { return true })
			b.kill()
			n := waitNexus(t, nex, "degraded after B was killed during its rebuild", 45*time.Second, func(n *enginev1.Nexus) bool {
				return n.GetState() == enginev1.NexusState_NEXUS_STATE_DEGRADED &&
					childState(n, remote) == enginev1.ChildState_CHILD_STATE_FAULTED
			})
			t.Logf("cycle %d: killed B again with the remote child %s (%d%%); faulted: %q", cycle,
				childState(before, remote), childProgress(before, remote), childReason(n, remote))
			b.restart(t)
			onlineChild(t, a, remote)
		}
		waitNexus(t, nex, "online after the rebuild", 60*time.Second, func(n *enginev1.Nexus) bool {
			return n.GetState() == enginev1.NexusState_NEXUS_STATE_ONLINE && allChildren(n, enginev1.ChildState_CHILD_STATE_ONLINE)
		})
		time.Sleep(100 * time.Millisecond) // some writes onto both mirrors again
		w.stop(t, "during the rebuild")
		if d := time.Duration(w.maxLat.Load()); d > maxStall {
			t.Fatalf("cycle %d: an I/O took %v during the rebuild phase (bound %v)", cycle, d, maxStall)
		}
		logLastRebuild(t, reb, remote, cycle)

		// 3. The nexus and both mirrors hold exactly the acknowledged data.
		m.verifyExport(t, a.nbd, "vol", fmt.Sprintf("cycle %d: nexus, rebuilt", cycle))
		sumA := m.verifyExport(t, a.nbd, "rA", fmt.Sprintf("cycle %d: local replica rA", cycle))
		sumB := m.verifyNVMf(t, remote, fmt.Sprintf("cycle %d: remote replica rB", cycle))
		if sumA != sumB {
			t.Fatalf("cycle %d: mirrors differ: rA sha256 %x, rB sha256 %x", cycle, sumA, sumB)
		}
		t.Logf("cycle %d: mirrors identical (sha256 %x), %d blocks written so far; cycle took %v",
			cycle, sumA[:8], m.written(), time.Since(start).Round(time.Millisecond))
	}
}

// cluster is engine A with nexus "vol" over its local replica rA and the
// replica rB of engine B (NVMe/TCP), published over NBD on A; rA is also
// shared over NBD on its own for comparisons.
type cluster struct {
	a, b          *engine
	local, remote string
	nex           enginev1.NexusServiceClient
	reb           enginev1.RebuildServiceClient
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	a := newEngine(t, "A", filepath.Join(dir, "a"))
	b := newEngine(t, "B", filepath.Join(dir, "b"))
	imgA, imgB := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	sparseFile(t, imgA, 128<<20)
	sparseFile(t, imgB, 128<<20)
	a.kura(t, "pool", "create", "pa", imgA, "--cluster-size", "1MiB")
	b.kura(t, "pool", "create", "pb", imgB, "--cluster-size", "1MiB")
	a.kura(t, "replica", "create", "pa", "rA", fmt.Sprintf("--size=%d", volMiB), "--thin")
	b.kura(t, "replica", "create", "pb", "rB", fmt.Sprintf("--size=%d", volMiB), "--thin")
	remote := findURI(t, b.kura(t, "replica", "share", "pb", "rB", "--allow-any-host"), "nvmf://")
	local := "bdev:///rA"
	a.kura(t, "nexus", "create", "vol", local, remote)
	pub := findURI(t, a.kura(t, "nexus", "publish", "vol", "--protocol", "nbd"), "nbd://")
	if !strings.HasSuffix(pub, "/vol") {
		t.Fatalf("nexus published as %q, want export vol", pub)
	}
	// The local replica's own export, to compare the mirrors at the end of
	// each cycle (the remote one is read over its NVMe/TCP share).
	findURI(t, a.kura(t, "replica", "share", "pa", "rA", "--protocol", "nbd"), "nbd://")
	nex := enginev1.NewNexusServiceClient(a.conn)
	waitNexus(t, nex, "online", 30*time.Second, func(n *enginev1.Nexus) bool {
		return n.GetState() == enginev1.NexusState_NEXUS_STATE_ONLINE && allChildren(n, enginev1.ChildState_CHILD_STATE_ONLINE)
	})
	return &cluster{a: a, b: b, local: local, remote: remote, nex: nex, reb: enginev1.NewRebuildServiceClient(a.conn)}
}

// ---------------------------------------------------------------- data model

// model records, per block, the generation of the last acknowledged write
// (0: never written, reads as zeros). Writer i owns the blocks of its
// region, so a block has one writer and needs no lock; readers look only
// after the writers stopped (their WaitGroup orders the accesses).
type model struct {
	gen  []uint64
	next atomic.Uint64 // generation source, unique over the whole test
}

func newModel() *model { return &model{gen: make([]uint64, volBlocks)} }

func (m *model) written() int {
	n := 0
	for _, g := range m.gen {
		if g != 0 {
			n++
		}
	}
	return n
}

// fillBlock writes block blk of generation gen: a header naming both, then
// pseudo-random words derived from them.
func fillBlock(p []byte, blk, gen uint64) {
	copy(p, "KURAFLT1")
	binary.LittleEndian.PutUint64(p[8:], blk)
	binary.LittleEndian.PutUint64(p[16:], gen)
	x := blk*0x9e3779b97f4a7c15 ^ gen*0xbf58476d1ce4e5b9
	for i := 24; i+8 <= len(p); i += 8 {
		x ^= x >> 30
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 27
		x *= 0x94d049bb133111eb
		x ^= x >> 31
		binary.LittleEndian.PutUint64(p[i:], x)
		x += uint64(i)
	}
}

// describe says what a block that does not match holds.
func describe(p []byte) string {
	if bytes.Count(p, []byte{0}) == len(p) {
		return "zeros"
	}
	if string(p[:8]) != "KURAFLT1" {
		return fmt.Sprintf("no header (% x ...)", p[:16])
	}
	blk, gen := binary.LittleEndian.Uint64(p[8:]), binary.LittleEndian.Uint64(p[16:])
	want := make([]byte, len(p))
	fillBlock(want, blk, gen)
	torn := ""
	if !bytes.Equal(want, p) {
		torn = " (torn/corrupt body)"
	}
	return fmt.Sprintf("block %d generation %d%s", blk, gen, torn)
}

// check verifies a chunk read at block first and feeds it to the hash;
// it returns a description of the first few mismatching blocks.
func (m *model) check(chunk []byte, first int, bad *[]string, nbad *int) {
	want := make([]byte, blockSize)
	for i := 0; i*blockSize < len(chunk); i++ {
		blk := first + i
		got := chunk[i*blockSize : (i+1)*blockSize]
		g := m.gen[blk]
		if g == 0 {
			clear(want)
		} else {
			fillBlock(want, uint64(blk), g)
		}
		if !bytes.Equal(got, want) {
			*nbad++
			if len(*bad) < 8 {
				exp := "zeros"
				if g != 0 {
					exp = fmt.Sprintf("generation %d", g)
				}
				*bad = append(*bad, fmt.Sprintf("block %d: want %s, holds %s", blk, exp, describe(got)))
			}
		}
	}
}

// verifyRead reads the whole volume with read and checks every block.
func (m *model) verifyRead(t *testing.T, what string, read func(p []byte, off int64) error) [32]byte {
	t.Helper()
	const chunk = 256 << 10
	buf := make([]byte, chunk)
	h := sha256.New()
	var bad []string
	nbad := 0
	for off := int64(0); off < volBlocks*blockSize; off += chunk {
		if err := read(buf, off); err != nil {
			t.Fatalf("%s: read at %d: %v", what, off, err)
		}
		h.Write(buf)
		m.check(buf, int(off/blockSize), &bad, &nbad)
	}
	if nbad > 0 {
		t.Fatalf("%s: %d of %d blocks do not hold the acknowledged data:\n  %s", what, nbad, volBlocks, strings.Join(bad, "\n  "))
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

func (m *model) verifyExport(t *testing.T, addr, export, what string) [32]byte {
	t.Helper()
	c, err := dialNBD(addr, export, opTimeout)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer c.Close()
	if c.size < volBlocks*blockSize {
		t.Fatalf("%s: export size %d, want at least %d", what, c.size, volBlocks*blockSize)
	}
	return m.verifyRead(t, what, c.ReadAt)
}

// verifyNVMf reads the remote replica through its own NVMe/TCP share with
// Kura's initiator.
func (m *model) verifyNVMf(t *testing.T, uri, what string) [32]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := nvmetcp.DialURI(ctx, uri)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer d.Close()
	return m.verifyRead(t, what, func(p []byte, off int64) error {
		_, err := d.ReadAt(p, off)
		return err
	})
}

// ---------------------------------------------------------------- writers

// writers are nWriters goroutines, one NBD connection each, writing random
// 1..8-block extents of their own region with fresh generations and
// flushing every flushEvery writes, until stopped. Each writer keeps to a
// random window of its region for the whole phase, so a degraded phase
// dirties only some segments and the partial rebuild that follows must get
// exactly those right. nReaders more connections read random extents
// (the nexus spreads reads over its children, which keeps I/O in flight to
// the remote child) and check each block is zeros or names itself. Any
// failed write, flush or read is an error of the test.
type writers struct {
	stopCh  chan struct{}
	wg      sync.WaitGroup
	writes  atomic.Int64
	flushes atomic.Int64
	reads   atomic.Int64
	maxLat  atomic.Int64 // nanoseconds
	mu      sync.Mutex
	errs    []string
}

func startWriters(t *testing.T, addr string, m *model, seed uint64) *writers {
	t.Helper()
	w := &writers{stopCh: make(chan struct{})}
	conns := make([]*nbdConn, nWriters+nReaders)
	for i := range conns {
		c, err := dialNBD(addr, "vol", opTimeout)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			t.Fatalf("writer %d: %v", i, err)
		}
		conns[i] = c
	}
	region := volBlocks / nWriters
	for i, c := range conns[nWriters:] {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer c.Close()
			w.read(c, i, rand.New(rand.NewPCG(seed, uint64(nWriters+i))))
		}()
	}
	for i, c := range conns[:nWriters] {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer c.Close()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			wlen := maxWriteBlk + rng.IntN(region/2-maxWriteBlk+1)
			wstart := i*region + rng.IntN(region-wlen+1)
			buf := make([]byte, maxWriteBlk*blockSize)
			gens := make([]uint64, maxWriteBlk)
			for n := 1; ; n++ {
				select {
				case <-w.stopCh:
					return
				default:
				}
				nb := 1 + rng.IntN(maxWriteBlk)
				if rng.IntN(4) != 0 {
					nb = 1
				}
				first := wstart + rng.IntN(wlen-nb+1)
				for k := 0; k < nb; k++ {
					gens[k] = m.next.Add(1)
					fillBlock(buf[k*blockSize:(k+1)*blockSize], uint64(first+k), gens[k])
				}
				t0 := time.Now()
				err := c.WriteAt(buf[:nb*blockSize], int64(first)*blockSize)
				w.latency(time.Since(t0))
				if err != nil {
					w.fail(fmt.Sprintf("writer %d: write of blocks %d..%d: %v", i, first, first+nb-1, err))
					return
				}
				copy(m.gen[first:first+nb], gens[:nb])
				w.writes.Add(1)
				if n%flushEvery == 0 {
					t0 := time.Now()
					err := c.Flush()
					w.latency(time.Since(t0))
					if err != nil {
						w.fail(fmt.Sprintf("writer %d: flush: %v", i, err))
						return
					}
					w.flushes.Add(1)
				}
			}
		}()
	}
	t.Cleanup(func() { w.halt() })
	return w
}

// read is one reader: random 1..8-block reads until stopped. Blocks
// written concurrently may be read torn, but the header's name and number
// are the same in every generation of a block, so each block must be all
// zeros in its header or name itself.
func (w *writers) read(c *nbdConn, i int, rng *rand.Rand) {
	buf := make([]byte, maxWriteBlk*blockSize)
	for {
		select {
		case <-w.stopCh:
			return
		default:
		}
		nb := 1 + rng.IntN(maxWriteBlk)
		first := rng.IntN(volBlocks - nb + 1)
		t0 := time.Now()
		err := c.ReadAt(buf[:nb*blockSize], int64(first)*blockSize)
		w.latency(time.Since(t0))
		if err != nil {
			w.fail(fmt.Sprintf("reader %d: read of blocks %d..%d: %v", i, first, first+nb-1, err))
			return
		}
		w.reads.Add(1)
		for k := 0; k < nb; k++ {
			p := buf[k*blockSize:]
			if bytes.Count(p[:24], []byte{0}) == 24 {
				continue
			}
			if string(p[:8]) != "KURAFLT1" || binary.LittleEndian.Uint64(p[8:]) != uint64(first+k) {
				w.fail(fmt.Sprintf("reader %d: block %d reads as %s", i, first+k, describe(p[:blockSize])))
				return
			}
		}
	}
}

func (w *writers) latency(d time.Duration) {
	for {
		old := w.maxLat.Load()
		if int64(d) <= old || w.maxLat.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

func (w *writers) slowest() time.Duration {
	return time.Duration(w.maxLat.Load()).Round(time.Millisecond)
}

func (w *writers) fail(msg string) {
	w.mu.Lock()
	w.errs = append(w.errs, msg)
	w.mu.Unlock()
}

func (w *writers) halt() {
	select {
	case <-w.stopCh:
	default:
		close(w.stopCh)
	}
	w.wg.Wait()
}

// stop ends the writers and fails the test if any write or flush failed.
func (w *writers) stop(t *testing.T, when string) {
	t.Helper()
	w.halt()
	if len(w.errs) > 0 {
		t.Fatalf("I/O through the nexus failed %s:\n  %s", when, strings.Join(w.errs, "\n  "))
	}
}

// ---------------------------------------------------------------- engine API

func sparseFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// findURI returns the first word of CLI output starting with prefix.
func findURI(t *testing.T, out, prefix string) string {
	t.Helper()
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, prefix) {
			return f
		}
	}
	t.Fatalf("no %s URI in CLI output %q", prefix, out)
	return ""
}

func getNexus(ctx context.Context, c enginev1.NexusServiceClient) (*enginev1.Nexus, error) {
	resp, err := c.ListNexuses(ctx, &enginev1.ListNexusesRequest{Name: "vol"})
	if err != nil {
		return nil, err
	}
	for _, n := range resp.GetNexuses() {
		if n.GetName() == "vol" {
			return n, nil
		}
	}
	return nil, fmt.Errorf("nexus vol not listed")
}

// waitNexus polls ListNexuses until ok holds, failing after timeout with
// the last state seen.
func waitNexus(t *testing.T, c enginev1.NexusServiceClient, what string, timeout time.Duration, ok func(*enginev1.Nexus) bool) *enginev1.Nexus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := getNexus(ctx, c)
		cancel()
		if err == nil && ok(n) {
			return n
		}
		if err != nil {
			last = err.Error()
		} else {
			last = nexusString(n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("nexus not %s after %v; last seen: %s", what, timeout, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func nexusString(n *enginev1.Nexus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s rebuilds=%d", n.GetName(), n.GetState(), n.GetRebuildCount())
	for _, c := range n.GetChildren() {
		fmt.Fprintf(&b, " [%s %s %q %d%%]", c.GetUri(), c.GetState(), c.GetReason(), c.GetRebuildProgress())
	}
	return b.String()
}

// checkCLIDegraded checks that `kura nexus list -o json` agrees with the
// API: nexus vol degraded, the local child online, the remote one faulted.
func checkCLIDegraded(t *testing.T, a *engine, local, remote string) {
	t.Helper()
	out := a.kura(t, "nexus", "list", "-o", "json")
	var list struct {
		Nexuses []struct {
			Name     string
			State    string
			Children []struct{ URI, State, Reason string }
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kura nexus list -o json: %v\n%s", err, out)
	}
	want := map[string]string{local: "CHILD_STATE_ONLINE", remote: "CHILD_STATE_FAULTED"}
	for _, n := range list.Nexuses {
		if n.Name != "vol" {
			continue
		}
		ok := n.State == "NEXUS_STATE_DEGRADED" && len(n.Children) == 2
		for _, c := range n.Children {
			ok = ok && want[c.URI] == c.State
		}
		if !ok {
			t.Fatalf("kura nexus list -o json does not show vol degraded with %s faulted:\n%s", remote, out)
		}
		return
	}
	t.Fatalf("kura nexus list -o json does not list vol:\n%s", out)
}

func allChildren(n *enginev1.Nexus, s enginev1.ChildState) bool {
	for _, c := range n.GetChildren() {
		if c.GetState() != s {
			return false
		}
	}
	return len(n.GetChildren()) > 0
}

func childState(n *enginev1.Nexus, uri string) enginev1.ChildState {
	for _, c := range n.GetChildren() {
		if c.GetUri() == uri {
			return c.GetState()
		}
	}
	return enginev1.ChildState_CHILD_STATE_UNKNOWN
}

func childProgress(n *enginev1.Nexus, uri string) uint32 {
	for _, c := range n.GetChildren() {
		if c.GetUri() == uri {
			return c.GetRebuildProgress()
		}
	}
	return 0
}

func childReason(n *enginev1.Nexus, uri string) string {
	for _, c := range n.GetChildren() {
		if c.GetUri() == uri {
			return c.GetReason()
		}
	}
	return ""
}

// onlineChild runs `kura nexus child online`. Right after B's restart the
// child's old, closed device may still have a hung call draining
// (FAILED_PRECONDITION "busy"); that is retried briefly.
func onlineChild(t *testing.T, a *engine, uri string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := a.run("nexus", "child", "online", "vol", uri)
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "busy") || time.Now().After(deadline) {
			t.Fatal(err)
		}
		t.Logf("retrying: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
}

func logLastRebuild(t *testing.T, c enginev1.RebuildServiceClient, uri string, cycle int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.GetRebuildHistory(ctx, &enginev1.GetRebuildHistoryRequest{Nexus: "vol"})
	if err != nil {
		t.Fatalf("rebuild history: %v", err)
	}
	var last *enginev1.RebuildRecord
	for _, r := range resp.GetRecords() {
		if r.GetChildUri() == uri && (last == nil || r.GetEndTimeUnixNano() > last.GetEndTimeUnixNano()) {
			last = r
		}
	}
	if last == nil {
		t.Fatalf("cycle %d: no rebuild of %s in the history", cycle, uri)
	}
	if last.GetState() != enginev1.RebuildState_REBUILD_STATE_COMPLETED {
		t.Fatalf("cycle %d: last rebuild of %s: %s", cycle, uri, last.GetState())
	}
	st := last.GetStats()
	if !st.GetPartial() {
		t.Fatalf("cycle %d: the rebuild of %s was full; the child was faulted with a dirty log, so it should be partial", cycle, uri)
	}
	t.Logf("cycle %d: rebuild %s, partial=%v, %d of %d blocks transferred, took %v", cycle, last.GetState(), st.GetPartial(),
		st.GetBlocksTransferred(), st.GetBlocksTotal(), time.Duration(last.GetEndTimeUnixNano()-last.GetStartTimeUnixNano()).Round(time.Millisecond))
}
