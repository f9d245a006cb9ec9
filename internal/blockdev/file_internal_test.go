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
