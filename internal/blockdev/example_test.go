package blockdev_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// A nexus test fails writes to one region of a child, slows its reads, and
// then heals it.
func ExampleFault() {
	child, _ := blockdev.NewMalloc("child", 8<<20, 512)
	f := blockdev.NewFault(child)
	defer f.Close()

	// Every write touching the second MiB fails with ErrIO.
	bad := f.Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Off: 1 << 20, Len: 1 << 20})
	// One read in ten (seeded, so reproducible) takes 5 ms longer.
	f.Seed(7)
	f.Inject(blockdev.FaultRule{Ops: blockdev.OpRead, Rate: 0.1, Delay: 5 * time.Millisecond})

	buf := make([]byte, 4096)
	_, err := f.WriteAt(buf, 1<<20)
	fmt.Println("write in bad region:", errors.Is(err, blockdev.ErrIO))
	_, err = f.WriteAt(buf, 0)
	fmt.Println("write elsewhere:", err)

	f.Remove(bad)
	_, err = f.WriteAt(buf, 1<<20)
	fmt.Println("after Remove:", err)
	fmt.Println("write errors injected:", f.Stats(blockdev.OpWrite).Errors)
	// Output:
	// write in bad region: true
	// write elsewhere: <nil>
	// after Remove: <nil>
	// write errors injected: 1
}
