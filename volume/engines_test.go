package volume_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/engine"
	"github.com/kura-io/kura/volume"
)

// startEngine runs a real Kura engine (gRPC API + NVMe/TCP target) with a
// pool on a file, creates a thick replica and shares it over NVMe/TCP; it
// returns the replica's nvmf:// URI.
func startEngine(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	e, err := engine.New(engine.Config{DataDir: filepath.Join(dir, "data"), GRPCAddr: "127.0.0.1:0",
		NVMeAddr: "127.0.0.1:0", NBDAddr: engine.Off, NodeName: name, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine %s: %v", name, err)
		}
	})
	select {
	case <-e.Ready():
	case err := <-done:
		t.Fatalf("engine %s: %v", name, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("engine %s not ready", name)
	}
	conn, err := grpc.NewClient(e.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := enginev1.NewPoolServiceClient(conn).CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "pool", Disks: []string{disk}}); err != nil {
		t.Fatal(err)
	}
	r, err := enginev1.NewReplicaServiceClient(conn).CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "pool", Name: "disk0",
		Size: 8 << 20, Share: &enginev1.ShareOptions{Protocol: enginev1.ShareProtocol_SHARE_PROTOCOL_NVMF, AllowAnyHost: true}})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetReplica().GetShare().GetUri()
}

// TestSeedNexusExampleWithEngines is the Mayastor README's nexus snippet
// against real engines: a local aio file plus two nvmf:// replicas, each on
// a pool of its own engine. A write of 0xff reaches all three children.
func TestSeedNexusExampleWithEngines(t *testing.T) {
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "disk1.img")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	children := []string{"aio://" + img + "?blk_size=512", startEngine(t, "fooo"), startEngine(t, "barr")}

	nx, err := volume.CreateNexus(ctx, "mynexus", 512, 16384, "b6565df0-af19-4645-9f98-e6a8b8c13b58", children)
	if err != nil {
		t.Fatal(err)
	}
	buf := volume.AlignedBuffer(4096)
	for i := range buf {
		buf[i] = 0xff
	}
	if _, err := nx.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	clear(buf)
	if _, err := nx.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte{0xff}, 4096)) {
		t.Fatal("nexus read back other data than it wrote")
	}
	if err := nx.Close(); err != nil {
		t.Fatal(err)
	}
	// Every child holds the block: open each on its own and read it.
	for _, c := range children {
		dev, err := volume.Open(ctx, c)
		if err != nil {
			t.Fatalf("open %s: %v", c, err)
		}
		got := volume.AlignedBuffer(4096)
		if _, err := dev.ReadAt(got, 0); err != nil {
			t.Fatalf("read %s: %v", c, err)
		}
		dev.Close()
		if !bytes.Equal(got, bytes.Repeat([]byte{0xff}, 4096)) {
			t.Fatalf("child %s does not hold the write", c)
		}
	}
}
