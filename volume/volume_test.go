package volume_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvmetcp"
	"github.com/kura-io/kura/volume"
)

func TestAlignedBuffer(t *testing.T) {
	for _, n := range []int{512, 4096, 1 << 20} {
		b := volume.AlignedBuffer(n)
		if len(b) != n || uintptr(unsafe.Pointer(&b[0]))%4096 != 0 {
			t.Fatalf("AlignedBuffer(%d): len %d addr %p", n, len(b), &b[0])
		}
	}
}

func TestOpenRejectsUnknownScheme(t *testing.T) {
	if _, err := volume.Open(context.Background(), "nope:///x"); err == nil {
		t.Fatal("unknown scheme accepted")
	}
}

// TestEveryChildHoldsTheData writes through a nexus over an aio file and
// two nvmf replicas, closes it, and reads every child directly.
func TestEveryChildHoldsTheData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	img := filepath.Join(dir, "d.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 8<<20)
	tg, err := nvmetcp.NewTarget(nvmetcp.TargetConfig{ListenAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	for _, n := range []string{"r0", "r1"} {
		d, _ := blockdev.NewMalloc(n, 8<<20, 512)
		defer d.Close()
		tg.AddSubsystem(nvmetcp.SubsystemConfig{NQN: "nqn.2019-05.io.kura:" + n, Device: d, AllowAnyHost: true})
	}
	children := []string{img,
		"nvmf://" + tg.Addr().String() + "/nqn.2019-05.io.kura:r0",
		"nvmf://" + tg.Addr().String() + "/nqn.2019-05.io.kura:r1"}
	nx, err := volume.CreateNexusWith(ctx, "v", 512, 8192, children,
		volume.Options{StateDir: filepath.Join(dir, "state"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if nx.UUID() == "" || nx.Size() != 4<<20 {
		t.Fatalf("uuid %q size %d", nx.UUID(), nx.Size())
	}
	want := bytes.Repeat([]byte("kura"), 1024)
	if _, err := nx.WriteAt(want, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := nx.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range children {
		d, err := volume.Open(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		if _, err := d.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("child %s: %v", c, err)
		}
		d.Close()
	}
	// The clean shutdown was recorded.
	if b, err := os.ReadFile(filepath.Join(dir, "state", "nexus-"+nx.UUID()+".json")); err != nil || !bytes.Contains(b, []byte(`"clean_shutdown": true`)) {
		t.Fatalf("nexus info: %s %v", b, err)
	}
}
