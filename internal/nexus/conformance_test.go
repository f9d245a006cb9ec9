package nexus

import (
	"fmt"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

func TestConformance(t *testing.T) {
	for _, k := range []int{1, 2, 3} {
		for _, bs := range []int{512, 4096} {
			t.Run(fmt.Sprintf("children=%d/bs=%d", k, bs), func(t *testing.T) {
				blockdevtest.RunWith(t, blockdevtest.Options{ZeroesUnwritten: true, SupportsUnmapZeroes: true},
					func(t *testing.T) blockdev.Device {
						e := newEnv(t, blockdevtest.MinSize)
						e.bs = bs
						n, err := New(t.Context(), e.config(uris(k)...))
						if err != nil {
							t.Fatal(err)
						}
						return n
					})
			})
		}
	}
}
