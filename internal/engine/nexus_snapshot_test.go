package engine

import (
	"crypto/sha256"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// TestNexusSnapshotUnderConcurrentWrites: a nexus snapshot taken while
// writers hammer the volume gives every child replica a snapshot with the
// same content (the nexus is quiesced between two acknowledged writes), and
// the volume keeps serving writes afterwards.
func TestNexusSnapshotUnderConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	te := startEngine(t, filepath.Join(dir, "data"))
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 256<<20)
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{disk}, ClusterSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	const size = 16 << 20
	for _, n := range []string{"r1", "r2"} {
		if _, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "p", Name: n, Size: size, Thin: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "vol", Children: []string{"bdev:///r1", "bdev:///r2"}}); err != nil {
		t.Fatal(err)
	}
	ne, err := te.e.nexusByName("vol")
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var writes atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			buf := make([]byte, 16<<10)
			for !stop.Load() {
				for i := range buf {
					buf[i] = byte(r.Uint32())
				}
				// Each writer owns a quarter of the volume: overlapping
				// concurrent writes have no defined order (the Device
				// contract), so mirrors could legitimately differ.
				region := int64(size / 4)
				off := int64(w)*region + int64(r.IntN(int(region)/len(buf)))*int64(len(buf))
				if _, err := ne.n.WriteAt(buf, off); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				writes.Add(1)
			}
		}()
	}
	time.Sleep(150 * time.Millisecond)
	before := writes.Load()
	sc := enginev1.NewSnapshotServiceClient(te.conn)
	if _, err := sc.CreateNexusSnapshot(ctx, &enginev1.CreateNexusSnapshotRequest{Nexus: "vol", Name: "ns"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	after := writes.Load()
	if before == 0 || after == before {
		t.Fatalf("writers did not run around the snapshot (%d before, %d after)", before, after)
	}

	te.e.mu.RLock()
	pe := te.e.mu.pools["p"]
	te.e.mu.RUnlock()
	var sums [][32]byte
	for _, name := range []string{"ns-r1", "ns-r2"} {
		s, err := pe.p.Snapshot(name)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		buf := make([]byte, 1<<20)
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := s.ReadAt(buf, off); err != nil {
				t.Fatal(err)
			}
			h.Write(buf)
		}
		sums = append(sums, [32]byte(h.Sum(nil)))
	}
	if sums[0] != sums[1] {
		t.Fatalf("the children's snapshots differ: %x vs %x", sums[0][:8], sums[1][:8])
	}
	t.Logf("%d writes before the snapshot, %d after; snapshots identical (sha256 %x)", before, after-before, sums[0][:8])
}
