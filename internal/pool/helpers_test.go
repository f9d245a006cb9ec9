package pool

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

var ctx = context.Background()

const testCS = 64 << 10

func mallocDev(t testing.TB, size int64) *blockdev.Malloc {
	t.Helper()
	d, err := blockdev.NewMalloc("pooltest", size, 4096)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fileDev opens a sparse file of size bytes in t's temp dir.
func fileDev(t testing.TB, size int64, direct bool) (*blockdev.File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pool.img")
	if err := truncate(path, size); err != nil {
		t.Fatal(err)
	}
	d, err := blockdev.OpenFile(path, blockdev.FileOptions{BlockSize: 4096, Buffered: !direct})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func mkPool(t testing.TB, dev blockdev.Device, cs int64) *Pool {
	t.Helper()
	p, err := Create(ctx, dev, "p1", CreateOptions{ClusterSize: cs})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustReplica(t testing.TB, p *Pool, name string, size int64, thin bool) *Replica {
	t.Helper()
	r, err := p.CreateReplica(ctx, name, ReplicaOptions{Size: size, Thin: thin})
	if err != nil {
		t.Fatalf("create replica %s: %v", name, err)
	}
	return r
}

func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func write(t testing.TB, d blockdev.Device, b []byte, off int64) {
	t.Helper()
	if _, err := d.WriteAt(b, off); err != nil {
		t.Fatalf("write %d+%d: %v", off, len(b), err)
	}
}

func read(t testing.TB, d blockdev.Device, n int, off int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		t.Fatalf("read %d+%d: %v", off, n, err)
	}
	return b
}

func expect(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: data differs at byte %d of %d", what, i, len(got))
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func check(t testing.TB, p *Pool) {
	t.Helper()
	if err := p.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

// reimport closes p and imports the pool again from dev.
func reimport(t testing.TB, p *Pool, dev blockdev.Device) *Pool {
	t.Helper()
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	q, err := Import(ctx, dev)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	check(t, q)
	return q
}
