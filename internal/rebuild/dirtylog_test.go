package rebuild

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestDirtyLogPersists(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.dlog")
	l, existed, err := OpenLog(p, 1<<20, 1000)
	if err != nil || existed {
		t.Fatal(err, existed)
	}
	for _, r := range [][2]int64{{0, 4096}, {5 << 20, 2 << 20}, {999 << 20, 512}, {0, 512}} {
		if err := l.Mark(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if l.Count() != 4 { // 0, 5, 6, 999
		t.Fatalf("count %d", l.Count())
	}
	l.Close() // a crash after Mark returned loses nothing: Mark synced
	l2, existed, err := OpenLog(p, 1<<20, 1000)
	if err != nil || !existed {
		t.Fatal(err, existed)
	}
	b := l2.Bitmap()
	for _, i := range []int64{0, 5, 6, 999} {
		if !b.Test(i) {
			t.Fatalf("segment %d lost", i)
		}
	}
	if b.Count() != 4 {
		t.Fatal(b.Count())
	}
	if _, _, err := OpenLog(p, 64<<10, 1000); !errors.Is(err, ErrLogMismatch) {
		t.Fatalf("geometry mismatch: %v", err)
	}
	if err := l2.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("not removed")
	}
}

func TestDirtyLogCorrupt(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.dlog")
	l, _, _ := OpenLog(p, 1<<20, 10)
	l.Close()
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	f.WriteAt([]byte{0xff}, 13)
	f.Close()
	if _, _, err := OpenLog(p, 1<<20, 10); !errors.Is(err, ErrLogCorrupt) {
		t.Fatalf("corrupt header: %v", err)
	}
}

func TestDirtyLogGroupCommit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.dlog")
	l, _, err := OpenLog(p, 4096, 4096)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 64 {
				if err := l.Mark(int64(g*64+i)*4096, 4096); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	l2, _, err := OpenLog(p, 4096, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Count() != 1024 {
		t.Fatalf("count %d", l2.Count())
	}
	l2.Close()
}

func TestDirtyLogMemory(t *testing.T) {
	l, existed, err := OpenLog("", 4096, 10)
	if err != nil || existed {
		t.Fatal(err)
	}
	l.Mark(0, 8192)
	if l.Count() != 2 || l.Remove() != nil {
		t.Fatal("memory log")
	}
}

func BenchmarkDirtyLogMarkDurable(b *testing.B) {
	l, _, _ := OpenLog(filepath.Join(b.TempDir(), "c.dlog"), 1<<20, 1024)
	l.Mark(0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		l.Mark(0, 4096) // already durable: fast path
	}
	l.Close()
}
