package nbd

import (
	"bytes"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

// A client that keeps several large writes in flight gets them
// overlapped on a slow device, although each arrives alone (its payload
// fills the socket reads, so nothing else is buffered when it is decoded);
// a queue-depth-1 client on the same export keeps the inline path.
func TestPipelinedLargeWritesOverlap(t *testing.T) {
	s, _ := startServer(t, 4<<20, 512, ExportOptions{})
	mem, err := blockdev.NewMalloc("slow", 8<<20, 512)
	if err != nil {
		t.Fatal(err)
	}
	dev := &blockdevtest.SlowWrites{Device: mem, Delay: 2 * time.Millisecond}
	if err := s.AddExport("slow", dev, ExportOptions{}); err != nil {
		t.Fatal(err)
	}

	// Queue depth 1: every write runs inline on the reader.
	c1 := dial(t, s.Addr(), "slow", false)
	for i := 0; i < 20; i++ {
		if code := c1.writeAt(0, uint64(i)*4096, pattern(4096, byte(i))); code != 0 {
			t.Fatalf("QD1 write %d: error %d", i, code)
		}
	}
	if n := s.workerStarts.Load(); n != 0 {
		t.Errorf("a queue-depth-1 client started %d workers; want the inline path", n)
	}
	if m := dev.MaxOverlap(); m != 1 {
		t.Errorf("QD1 writes overlapped (%d at once)", m)
	}

	// Queue depth 4, 128 KiB writes.
	c := dial(t, s.Addr(), "slow", false)
	const depth, batches, size = 4, 12, 128 << 10
	for b := 0; b < batches; b++ {
		for i := 0; i < depth; i++ {
			c.send(0, cmdWrite, uint64(i)*size, size, pattern(size, byte(b*depth+i)))
		}
		for i := 0; i < depth; i++ {
			if _, code, err := c.recv(func(uint64) (uint32, uint64) { return 0, 0 }, nil); err != nil || code != 0 {
				t.Fatalf("batch %d reply %d: code %d err %v", b, i, code, err)
			}
		}
	}
	t.Logf("max overlap %d, workers %d", dev.MaxOverlap(), s.workerStarts.Load())
	if m := dev.MaxOverlap(); m < 2 {
		t.Errorf("pipelined 128 KiB writes never overlapped on a slow device (max %d at once)", m)
	}
	for i := 0; i < depth; i++ {
		got, code := c.read(uint64(i)*size, size)
		if want := pattern(size, byte((batches-1)*depth+i)); code != 0 || !bytes.Equal(got, want) {
			t.Fatalf("block %d: error %d, data equal %v", i, code, bytes.Equal(got, want))
		}
	}
}
