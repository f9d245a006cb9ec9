package pool

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

// closingReplica adapts a replica to the conformance suite's Close
// contract: Close destroys the replica, so later calls fail with
// blockdev.ErrClosed (the pool owns replica lifetime; Replica.Close itself
// is a no-op).
type closingReplica struct {
	*Replica
	closed atomic.Bool
}

func (c *closingReplica) Close() error {
	if c.closed.Swap(true) {
		return blockdev.ErrClosed
	}
	err := c.p.DestroyReplica(ctx, c.v.uuid.String())
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func TestConformance(t *testing.T) {
	opts := blockdevtest.Options{ZeroesUnwritten: true, SupportsUnmapZeroes: true}
	size := int64(blockdevtest.MinSize)
	open := func(kind string) func(t *testing.T) blockdev.Device {
		return func(t *testing.T) blockdev.Device {
			var dev blockdev.Device = mallocDev(t, 64<<20)
			if kind == "thin512" {
				m, err := blockdev.NewMalloc("pool512", 64<<20, 512)
				if err != nil {
					t.Fatal(err)
				}
				dev = m
			}
			p := mkPool(t, dev, testCS)
			var r *Replica
			switch kind {
			case "thick":
				r = mustReplica(t, p, "r", size, false)
			case "thin", "thin512":
				r = mustReplica(t, p, "r", size, true)
			case "clone":
				src := mustReplica(t, p, "src", size, true)
				// Give the snapshot data so the clone really reads through.
				write(t, src, pattern(99, 1<<20), 0)
				if _, err := p.CreateSnapshot(ctx, "src", "snap", ""); err != nil {
					t.Fatal(err)
				}
				c, err := p.CloneSnapshot(ctx, "snap", "r", "")
				if err != nil {
					t.Fatal(err)
				}
				// The suite expects never-written blocks to read zeros:
				// zero what the clone inherited (partly via copy-on-write).
				if err := c.WriteZeroes(0, 1<<20); err != nil {
					t.Fatal(err)
				}
				r = c
			}
			t.Cleanup(func() {
				if err := p.Check(ctx); err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("Check: %v", err)
				}
			})
			return &closingReplica{Replica: r}
		}
	}
	for _, kind := range []string{"thick", "thin", "clone", "thin512"} {
		t.Run(kind, func(t *testing.T) { blockdevtest.RunWith(t, opts, open(kind)) })
	}
}
