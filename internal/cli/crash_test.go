package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/pool"
	"github.com/kura-io/kura/internal/testtool"
)

const crashBlock = 4096

// crashReplica is the test's model of one replica.
type crashReplica struct {
	name    string
	size    int64
	newSize int64 // set while a resize is not acknowledged
	thin    bool
	created bool // the create was acknowledged
	// written holds the expected content of blocks whose write was
	// flushed (acknowledged Flush after the write).
	written map[int64][]byte
	// pending holds every version of the blocks written since the last
	// acknowledged flush, in order: after a crash each 512-byte sector
	// holds the flushed data or one of them (a block written twice before
	// a flush may keep the first write if the engine dies before the
	// second).
	pending map[int64][][]byte
}

// crashModel is what the workload knows was made durable.
type crashModel struct {
	reps map[string]*crashReplica
	// destroying is a replica whose destroy was sent but not acknowledged.
	destroying string
	next       int
	// Acknowledged operations, for the log.
	creates, destroys, resizes, flushes, blocks int
}

// TestCrashConsistency SIGKILLs a `kura engine` process at random moments
// while it creates and destroys replicas and writes and flushes data to
// them through NBD shares, one write at a time or in pipelined batches
// (ring mode). After every kill the pool must import, check
// clean, and every flushed write must read back exactly (never-written
// blocks read zeros); the restarted engine must re-import the pool and
// re-create the shares by itself. 15 cycles by default, 200 with
// KURA_LONG=1; KURA_CRASH_SEED replays a run.
func TestCrashConsistency(t *testing.T) {
	cycles := 15
	if testtool.Long() {
		cycles = 200
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KURA_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = v
	}
	t.Logf("seed %d (KURA_CRASH_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))

	dir := t.TempDir()
	img := filepath.Join(dir, "pool.img")
	zeroFile(t, img, 256<<20)
	data := filepath.Join(dir, "data")
	m := &crashModel{reps: map[string]*crashReplica{}}

	start := time.Now()
	var ringEnters float64 // connections that entered ring mode, over all engine lifetimes
	for cycle := 0; cycle < cycles; cycle++ {
		e := startEngineProc(t, data)
		conn, err := grpc.NewClient(e.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		pc := enginev1.NewPoolServiceClient(conn)
		rc := enginev1.NewReplicaServiceClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if cycle == 0 {
			if _, err := pc.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "cpool", Disks: []string{img}, ClusterSize: 1 << 20}); err != nil {
				t.Fatal(err)
			}
		} else {
			// The engine re-imported the pool and re-created the shares.
			crashCheckEngine(ctx, t, pc, rc, m, cycle)
		}

		done := make(chan error, 1)
		wctx, wcancel := context.WithCancel(ctx)
		wrng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())) // rng stays on this goroutine
		go func() { done <- crashWorkload(wctx, rc, e.nbd, m, wrng) }()
		delay := time.Duration(20+rng.IntN(400)) * time.Millisecond
		select {
		case err := <-done:
			t.Fatalf("cycle %d: workload stopped before the kill: %v", cycle, err)
		case <-time.After(delay):
		}
		if n := e.metric(t, `kura_ring_mode_entries_total{frontend="nbd"}`); n > 0 {
			ringEnters += n
		}
		e.kill()
		wcancel()
		<-done
		cancel()
		conn.Close()

		crashVerifyOffline(t, img, m, cycle)
	}
	t.Logf("%d crash cycles in %s: %d creates, %d destroys, %d resizes, %d flushes of %d blocks acknowledged; %d replicas alive",
		cycles, time.Since(start).Round(time.Millisecond), m.creates, m.destroys, m.resizes, m.flushes, m.blocks, len(m.reps))
	if m.flushes == 0 || m.creates == 0 {
		t.Fatal("the workload made no progress")
	}
	t.Logf("NBD connections entered ring mode %v times", ringEnters)
	if ringEnters == 0 {
		t.Fatal("no pipelined batch put an NBD connection into ring mode")
	}
}

// crashWorkload creates, destroys and writes to replicas until an error
// (the engine was killed).
func crashWorkload(ctx context.Context, rc enginev1.ReplicaServiceClient, nbdAddr string, m *crashModel, rng *rand.Rand) error {
	conns := map[string]*nbdClient{}
	defer func() {
		for _, c := range conns {
			c.c.Close()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var live []*crashReplica
		for _, r := range m.reps {
			if r.created {
				live = append(live, r)
			}
		}
		slices.SortFunc(live, func(a, b *crashReplica) int { return cmpString(a.name, b.name) })
		switch op := rng.IntN(10); {
		case op < 2 && len(live) < 6 || len(live) == 0:
			m.next++
			r := &crashReplica{name: fmt.Sprintf("r%d", m.next), size: int64(4+rng.IntN(12)) << 20, thin: rng.IntN(2) == 0,
				written: map[int64][]byte{}, pending: map[int64][][]byte{}}
			m.reps[r.name] = r
			if _, err := rc.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "cpool", Name: r.name, Size: uint64(r.size), Thin: r.thin,
				Share: &enginev1.ShareOptions{Protocol: enginev1.ShareProtocol_SHARE_PROTOCOL_NBD}}); err != nil {
				return err
			}
			r.created = true
			m.creates++
		case op == 3 && len(live) > 0:
			r := live[rng.IntN(len(live))]
			if r.size >= 32<<20 {
				continue
			}
			r.newSize = r.size + int64(1+rng.IntN(4))<<20
			if _, err := rc.ResizeReplica(ctx, &enginev1.ResizeReplicaRequest{Pool: "cpool", Name: r.name, Size: uint64(r.newSize)}); err != nil {
				return err
			}
			r.size, r.newSize = r.newSize, 0
			if c := conns[r.name]; c != nil { // reconnect to see the new size
				c.Close()
				delete(conns, r.name)
			}
			m.resizes++
		case op < 3 && len(live) > 1:
			r := live[rng.IntN(len(live))]
			if c := conns[r.name]; c != nil {
				c.Close()
				delete(conns, r.name)
			}
			m.destroying = r.name
			if _, err := rc.DestroyReplica(ctx, &enginev1.DestroyReplicaRequest{Pool: "cpool", Name: r.name}); err != nil {
				return err
			}
			delete(m.reps, r.name)
			m.destroying = ""
			m.destroys++
		default:
			r := live[rng.IntN(len(live))]
			c := conns[r.name]
			if c == nil {
				var err error
				if c, err = dialNBD(nbdAddr, r.name); err != nil {
					return err
				}
				conns[r.name] = c
			}
			if rng.IntN(2) == 0 {
				// One at a time.
				for i := 1 + rng.IntN(8); i > 0; i-- {
					blk := rng.Int64N(r.size / crashBlock)
					buf := make([]byte, crashBlock)
					fillBlock(buf, rng.Uint64())
					r.pending[blk] = append(r.pending[blk], buf)
					if err := c.WriteAt(buf, blk*crashBlock); err != nil {
						return err
					}
				}
			} else if err := crashWriteBatch(c, r, rng); err != nil {
				return err
			}
			if err := c.Flush(); err != nil {
				return err
			}
			for blk, vs := range r.pending {
				r.written[blk] = vs[len(vs)-1]
			}
			m.flushes++
			m.blocks += len(r.pending)
			clear(r.pending)
		}
	}
}

// crashWriteBatch sends 8–32 writes to distinct blocks of r at once
// (pipelined: the server takes the connection into ring mode) and waits
// for their replies.
func crashWriteBatch(c *nbdClient, r *crashReplica, rng *rand.Rand) error {
	n := min(8+rng.IntN(25), int(r.size/crashBlock))
	offs, bufs := make([]int64, 0, n), make([][]byte, 0, n)
	seen := map[int64]bool{}
	for len(offs) < n {
		blk := rng.Int64N(r.size / crashBlock)
		if seen[blk] {
			continue
		}
		seen[blk] = true
		buf := make([]byte, crashBlock)
		fillBlock(buf, rng.Uint64())
		r.pending[blk] = append(r.pending[blk], buf)
		offs, bufs = append(offs, blk*crashBlock), append(bufs, buf)
	}
	return c.writeBatch(offs, bufs)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func fillBlock(b []byte, v uint64) {
	h := fnv.New64a()
	var x [8]byte
	for i := 0; i < len(b); i += 8 {
		for j := range x {
			x[j] = byte(v >> (8 * j))
		}
		h.Write(x[:])
		v = h.Sum64() + uint64(i)
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// crashVerifyOffline imports the pool from the image in this process (the
// engine is dead), checks its metadata, verifies every replica's data
// against the model and reconciles the operations the kill interrupted.
func crashVerifyOffline(t *testing.T, img string, m *crashModel, cycle int) {
	t.Helper()
	ctx := context.Background()
	dev, err := blockdev.NewRegistry().Open(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	p, err := pool.Import(ctx, dev)
	if err != nil {
		t.Fatalf("cycle %d: import after kill: %v", cycle, err)
	}
	defer p.Close()
	if err := p.Check(ctx); err != nil {
		t.Fatalf("cycle %d: pool check after kill: %v", cycle, err)
	}
	onDisk := map[string]*pool.Replica{}
	for _, r := range p.Replicas() {
		onDisk[r.Info().Name] = r
	}
	for name, r := range m.reps {
		pr, ok := onDisk[name]
		switch {
		case !ok && r.created && name != m.destroying:
			t.Fatalf("cycle %d: acknowledged replica %s lost", cycle, name)
		case !ok:
			delete(m.reps, name) // create or destroy not acknowledged: gone
			continue
		}
		info := pr.Info()
		if r.newSize != 0 && info.Size == r.newSize { // unacknowledged resize happened
			r.size = r.newSize
		}
		r.newSize = 0
		if info.Size != r.size || info.Thin != r.thin {
			t.Fatalf("cycle %d: replica %s is %d bytes thin=%v, want %d thin=%v", cycle, name, info.Size, info.Thin, r.size, r.thin)
		}
		r.created = true
		crashVerifyData(t, pr, r, cycle)
		delete(onDisk, name)
	}
	for name := range onDisk {
		t.Fatalf("cycle %d: replica %s on disk was never created", cycle, name)
	}
	m.destroying = ""
}

func crashVerifyData(t *testing.T, dev blockdev.Device, r *crashReplica, cycle int) {
	t.Helper()
	buf := make([]byte, crashBlock)
	zero := make([]byte, crashBlock)
	check := func(blk int64) {
		if _, err := dev.ReadAt(buf, blk*crashBlock); err != nil {
			t.Fatalf("cycle %d: read %s block %d: %v", cycle, r.name, blk, err)
		}
		old, ok := r.written[blk]
		if !ok {
			old = zero
		}
		if vs, ok := r.pending[blk]; ok {
			// Unflushed: every sector is the flushed data or one of the
			// versions written since.
			for s := 0; s < crashBlock; s += 512 {
				match := bytes.Equal(buf[s:s+512], old[s:s+512])
				for _, nw := range vs {
					match = match || bytes.Equal(buf[s:s+512], nw[s:s+512])
				}
				if !match {
					t.Fatalf("cycle %d: %s block %d sector %d is neither the flushed nor any unflushed data", cycle, r.name, blk, s/512)
				}
			}
			r.written[blk] = slices.Clone(buf)
			return
		}
		if !bytes.Equal(buf, old) {
			what := "flushed data"
			if !ok {
				what = "zeros (never written)"
			}
			t.Fatalf("cycle %d: %s block %d does not read back as %s", cycle, r.name, blk, what)
		}
	}
	for blk := range r.written {
		if _, ok := r.pending[blk]; !ok {
			check(blk)
		}
	}
	for blk := range r.pending {
		check(blk)
	}
	clear(r.pending)
	// A few never-written blocks read as zeros.
	for i := int64(0); i < 8; i++ {
		blk := (i * 7919) % (r.size / crashBlock)
		if _, ok := r.written[blk]; !ok {
			check(blk)
		}
	}
}

// crashCheckEngine checks the restarted engine re-imported the pool with
// the model's replicas, each shared over NBD again.
func crashCheckEngine(ctx context.Context, t *testing.T, pc enginev1.PoolServiceClient, rc enginev1.ReplicaServiceClient, m *crashModel, cycle int) {
	t.Helper()
	pl, err := pc.ListPools(ctx, &enginev1.ListPoolsRequest{Name: "cpool"})
	if err != nil {
		t.Fatalf("cycle %d: pool after restart: %v", cycle, err)
	}
	if st := pl.GetPools()[0].GetState(); st != enginev1.PoolState_POOL_STATE_ONLINE {
		t.Fatalf("cycle %d: pool state %v after restart", cycle, st)
	}
	rl, err := rc.ListReplicas(ctx, &enginev1.ListReplicasRequest{Pool: "cpool"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rl.GetReplicas()) != len(m.reps) {
		t.Fatalf("cycle %d: engine lists %d replicas, model has %d", cycle, len(rl.GetReplicas()), len(m.reps))
	}
	for _, r := range rl.GetReplicas() {
		if _, ok := m.reps[r.GetName()]; !ok {
			t.Fatalf("cycle %d: unexpected replica %s", cycle, r.GetName())
		}
		if r.GetShare().GetProtocol() != enginev1.ShareProtocol_SHARE_PROTOCOL_NBD {
			// A create acknowledged by the pool but killed before its
			// share was recorded has no share; share it again.
			if _, err := rc.ShareReplica(ctx, &enginev1.ShareReplicaRequest{Pool: "cpool", Name: r.GetName(),
				Options: &enginev1.ShareOptions{Protocol: enginev1.ShareProtocol_SHARE_PROTOCOL_NBD}}); err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("cycle %d: share %s: %v", cycle, r.GetName(), err)
			}
		}
	}
}
