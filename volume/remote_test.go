package volume_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvmetcp"
	"github.com/kura-io/kura/volume"
)

// TestRemoteReplicaLossAndReturn: an nvmf:// child whose target goes away
// is faulted within the child timeout while writes keep succeeding on the
// local child; once the export is back, onlining it copies only what it
// missed and the replica matches.
func TestRemoteReplicaLossAndReturn(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	tg, err := nvmetcp.NewTarget(nvmetcp.TargetConfig{ListenAddr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	const nqn = "nqn.2019-05.io.kura:replica"
	replica, _ := blockdev.NewMalloc("replica", 8<<20, 512)
	defer replica.Close()
	if err := tg.AddSubsystem(nvmetcp.SubsystemConfig{NQN: nqn, Device: replica, AllowAnyHost: true}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "local.img")
	writeFile(t, img, 8<<20)
	remote := "nvmf://" + tg.Addr().String() + "/" + nqn + "?kato_ms=0"
	nx, err := volume.CreateNexusWith(ctx, "remote", 512, 16384, []string{img, remote},
		volume.Options{StateDir: filepath.Join(dir, "state"), ChildTimeout: 500 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer nx.Close()
	a := bytes.Repeat([]byte{0xa}, 64<<10)
	if _, err := nx.WriteAt(a, 0); err != nil {
		t.Fatal(err)
	}

	// The replica's export disappears.
	if err := tg.RemoveSubsystem(nqn); err != nil {
		t.Fatal(err)
	}
	b := bytes.Repeat([]byte{0xb}, 64<<10)
	start := time.Now()
	if _, err := nx.WriteAt(b, 1<<20); err != nil {
		t.Fatalf("write with the remote replica gone: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("write took %v", d)
	}
	if st := nx.Children()[1]; st.State != "faulted" {
		t.Fatalf("remote child: %+v", st)
	}
	if nx.State() != "degraded" {
		t.Fatal(nx.State())
	}

	// The export returns; online copies only the segment written meanwhile.
	if err := tg.AddSubsystem(nvmetcp.SubsystemConfig{NQN: nqn, Device: replica, AllowAnyHost: true}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := nx.OnlineChild(ctx, remote)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("online: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for nx.Children()[1].State != "open" {
		if time.Now().After(deadline) {
			t.Fatalf("rebuild: %+v", nx.Children())
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := make([]byte, 64<<10)
	for off, want := range map[int64][]byte{0: a, 1 << 20: b} {
		if _, err := replica.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("replica at %d: %v", off, err)
		}
	}
}

func writeFile(t *testing.T, p string, size int64) {
	t.Helper()
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
}
