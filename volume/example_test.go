package volume_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvmetcp"
	"github.com/kura-io/kura/volume"
)

// Example_nexus mirrors the nexus snippet of the Mayastor README: a nexus
// over a local aio file and two NVMe/TCP replicas. The replicas here are
// served by an in-process Kura target on loopback so the example runs
// anywhere; in production they are other nodes.
func Example_nexus() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "kura-example-")
	defer os.RemoveAll(dir)

	// A local disk image for the aio child.
	img := filepath.Join(dir, "disk1.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		log.Fatal(err)
	}
	os.Truncate(img, 16<<20)

	// Two remote replicas (here: memory devices behind a loopback target).
	quiet := slog.New(slog.DiscardHandler)
	target, _ := nvmetcp.NewTarget(nvmetcp.TargetConfig{ListenAddr: "127.0.0.1:0", Logger: quiet})
	if err := target.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer target.Close()
	for _, name := range []string{"disk0", "disk1"} {
		dev, _ := blockdev.NewMalloc(name, 16<<20, 4096)
		defer dev.Close()
		target.AddSubsystem(nvmetcp.SubsystemConfig{NQN: "nqn.2019-05.io.kura:" + name, Device: dev, AllowAnyHost: true})
	}
	addr := target.Addr().String()

	children := []string{
		"aio://" + img + "?blk_size=4096",
		"nvmf://" + addr + "/nqn.2019-05.io.kura:disk0",
		"nvmf://" + addr + "/nqn.2019-05.io.kura:disk1",
	}

	// If no UUID is given, one is generated.
	uuid := "0b6565df-af19-4645-9f98-e6a8b8c13b58"

	// Create the nexus over the three children: 4096-byte blocks, 2048 of them.
	nx, err := volume.CreateNexus(ctx, "mynexus", 4096, 2048, uuid, children)
	if err != nil {
		log.Fatal(err)
	}
	defer nx.Close()

	// Any buffer works; an aligned one avoids a copy on O_DIRECT children.
	buf := volume.AlignedBuffer(4096)

	// Fill the buffer with a known value and write it: all three children
	// receive the same I/O.
	for i := range buf {
		buf[i] = 0xff
	}
	if _, err := nx.WriteAt(buf, 0); err != nil {
		log.Fatal(err)
	}

	// Zero the buffer and read the data back.
	clear(buf)
	if _, err := nx.ReadAt(buf, 0); err != nil {
		log.Fatal(err)
	}

	// Verify it holds what was written.
	fmt.Println("read back 0xff:", bytes.Equal(buf, bytes.Repeat([]byte{0xff}, 4096)))

	// Each child is open and in sync.
	for _, c := range nx.Children() {
		fmt.Println(c.URI[:7], c.State)
	}
	fmt.Println("nexus", nx.State())
	// Output:
	// read back 0xff: true
	// aio:/// open
	// nvmf:// open
	// nvmf:// open
	// nexus online
}

// ExampleOpen opens a device by URI and does I/O on it directly.
func ExampleOpen() {
	ctx := context.Background()
	dev, err := volume.Open(ctx, "malloc:///scratch?size_mb=8&blk_size=4096")
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	buf := volume.AlignedBuffer(dev.BlockSize())
	copy(buf, "hello, block device")
	if _, err := dev.WriteAt(buf, 4096); err != nil {
		log.Fatal(err)
	}
	clear(buf)
	if _, err := dev.ReadAt(buf, 4096); err != nil {
		log.Fatal(err)
	}
	fmt.Println(dev.Size(), string(buf[:19]))
	// Output: 8388608 hello, block device
}
