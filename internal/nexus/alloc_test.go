package nexus

import (
	"context"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

// TestHotPathNoAllocs checks reads, writes and flushes allocate nothing
// per I/O in steady state (pooled requests, per-child workers).
func TestHotPathNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	e := newEnv(t, 4<<20)
	cfg := e.config(uris(3)...)
	cfg.Opener = func(_ context.Context, uri string) (blockdev.Device, error) {
		return blockdev.NewMalloc(uri, 4<<20, 512)
	}
	n := e.newNexus(cfg)
	buf := make([]byte, 4096)
	n.WriteAt(buf, 0) // warm the pools
	for name, f := range map[string]func(){
		"write": func() { n.WriteAt(buf, 8192) },
		"read":  func() { n.ReadAt(buf, 8192) },
		"flush": func() { n.Flush() },
	} {
		if a := testing.AllocsPerRun(200, f); a > 0.05 {
			t.Errorf("%s: %.2f allocs per I/O", name, a)
		}
	}
}
