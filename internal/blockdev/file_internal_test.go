package blockdev

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFileNoDirectFallback simulates a filesystem that rejects O_DIRECT.
func TestFileNoDirectFallback(t *testing.T) {
	old := openDirect
	openDirect = func(string, int) (int, error) { return -1, unix.EINVAL }
	t.Cleanup(func() { openDirect = old })

	path := filepath.Join(t.TempDir(), "f.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path, FileOptions{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Direct() {
		t.Fatal("Direct() = true after O_DIRECT failed")
	}
	p := make([]byte, 4097)[1:] // unaligned memory: no bounce needed when buffered
	for i := range p {
		p[i] = byte(i)
	}
	if _, err := f.WriteAt(p, 8192); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if _, err := f.ReadAt(got, 8192); err != nil || string(got) != string(p) {
		t.Fatalf("read back: %v", err)
	}
}

func TestGate(t *testing.T) {
	g := newGate()
	if !g.enter() {
		t.Fatal("enter on open gate failed")
	}
	closed := make(chan bool)
	go func() { closed <- g.close() }()
	for g.state.Load()&gateClosed == 0 {
	}
	if g.enter() {
		t.Fatal("enter after close started")
	}
	select {
	case <-closed:
		t.Fatal("close returned with a call in flight")
	default:
	}
	g.exit()
	if !<-closed {
		t.Fatal("first close reported false")
	}
	if g.close() {
		t.Fatal("second close reported true")
	}
}

// TestFileNoFallocate simulates storage without fallocate: WriteZeroes
// writes zeros, Unmap is a successful no-op.
func TestFileNoFallocate(t *testing.T) {
	old := fallocateSys
	calls := 0
	fallocateSys = func(int, uint32, int64, int64) error { calls++; return unix.EOPNOTSUPP }
	t.Cleanup(func() { fallocateSys = old })

	path := filepath.Join(t.TempDir(), "f.img")
	data := make([]byte, 2<<20)
	for i := range data {
		data[i] = 0xEE
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path, FileOptions{BlockSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// 600 KiB crosses several zero-buffer writes.
	if err := f.WriteZeroes(4096, 600<<10); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("fallocate tried %d times, want 2 (ZERO_RANGE, PUNCH_HOLE)", calls)
	}
	got := make([]byte, 2<<20)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		want := byte(0xEE)
		if i >= 4096 && i < 4096+600<<10 {
			want = 0
		}
		if b != want {
			t.Fatalf("byte %d = %#x, want %#x", i, b, want)
		}
	}
	if err := f.Unmap(0, 4096); err != nil {
		t.Fatalf("Unmap without discard support: %v", err)
	}
}

// TestShmDirect logs whether tmpfs gives O_DIRECT on this kernel (it does
// since Linux 6.6); the conformance suite covers both outcomes.
func TestShmDirect(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "kura-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Logf("tmpfs %s: direct=%v", dir, f.Direct())
}
