package nexus

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

// asyncChildren makes env.open hand out asyncAdapter children, so the
// fault tests also run through the nexus's asynchronous child path. Set
// only by TestAsyncChildren (nexus tests do not run in parallel).
var asyncChildren bool

// asyncAdapter gives a fault-injecting test device the blockdev.Async
// fast path: each started I/O runs on its own goroutine (tests only), so
// injected errors and hangs reach the nexus through IODone.
type asyncAdapter struct {
	*blockdev.Fault
	started atomic.Int64
}

func (a *asyncAdapter) StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool {
	if len(p) == 0 || blockdev.CheckRange(off, int64(len(p)), a.BlockSize(), a.Size()) != nil {
		return false
	}
	a.started.Add(1)
	go func() {
		var n int
		var err error
		if write {
			n, err = a.WriteAt(p, off)
		} else {
			n, err = a.ReadAt(p, off)
		}
		cb.IODone(n, err)
		cb.IOFlush()
	}()
	return true
}

func (a *asyncAdapter) Submit() {}


// TestAsyncChildren runs the fault-handling tests with children that take
// reads and writes through blockdev.Async.
func TestAsyncChildren(t *testing.T) {
	asyncChildren = true
	defer func() { asyncChildren = false }()
	for name, f := range map[string]func(*testing.T){
		"WriteErrorFaultsChildBeforeAck": TestWriteErrorFaultsChildBeforeAck,
		"ReadErrorRetriesOnOtherChild":   TestReadErrorRetriesOnOtherChild,
		"LastHealthyChildNeverFaulted":   TestLastHealthyChildNeverFaulted,
		"NoHealthyChildFailsCleanly":     TestNoHealthyChildFailsCleanly,
		"HungChildTimesOut":              TestHungChildTimesOut,
		"SlowChildNotFaulted":            TestSlowChildNotFaulted,
		"Conformance":                    TestConformance,
	} {
		t.Run(name, f)
	}
	t.Run("UsesAsync", func(t *testing.T) {
		e := newEnv(t, 4<<20)
		cs := uris(3)
		n := e.newNexus(e.config(cs...))
		for i := range 8 {
			if _, err := n.WriteAt(fill(byte(i), 4096), int64(i)*4096); err != nil {
				t.Fatal(err)
			}
		}
		// Two of the three children's parts run asynchronously (the
		// third runs inline in the caller).
		var started int64
		for _, c := range n.snap.Load().healthy {
			started += c.dev.(*asyncAdapter).started.Load()
		}
		if started != 16 {
			t.Fatalf("%d child writes started asynchronously, want 16", started)
		}
	})
}

// TestConformanceUring runs the conformance suites on a nexus over io_uring
// files (the children take the asynchronous path).
func TestConformanceUring(t *testing.T) {
	for _, k := range []int{1, 3} {
		t.Run(fmt.Sprintf("children=%d", k), func(t *testing.T) {
			blockdevtest.RunWith(t, blockdevtest.Options{ZeroesUnwritten: true, SupportsUnmapZeroes: true},
				func(t *testing.T) blockdev.Device { return uringNexus(t, k) })
		})
	}
}

func uringNexus(t *testing.T, k int) *Nexus {
	dir := t.TempDir()
	var cs []string
	for i := range k {
		path := filepath.Join(dir, fmt.Sprintf("c%d.img", i))
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, blockdevtest.MinSize); err != nil {
			t.Fatal(err)
		}
		d, err := blockdev.OpenUring(path, blockdev.FileOptions{BlockSize: 4096})
		if err != nil {
			t.Skipf("io_uring: %v", err)
		}
		d.Close()
		cs = append(cs, "uring://"+path)
	}
	e := newEnv(t, blockdevtest.MinSize)
	cfg := e.config(cs...)
	cfg.Opener = blockdev.NewRegistry().Open
	n, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUringMirrorIdentical writes through a 3-way nexus over io_uring files
// from many goroutines and checks the children are byte-identical.
func TestUringMirrorIdentical(t *testing.T) {
	n := uringNexus(t, 3)
	defer n.Shutdown(t.Context())
	const workers = 8
	done := make(chan error, workers)
	for w := range workers {
		go func() {
			buf := blockdev.AlignedBuffer(4096)
			for i := range 64 {
				copy(buf, fill(byte(w*64+i), 4096))
				if _, err := n.WriteAt(buf, int64((w*64+i)%512)*4096); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range workers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	var sums [][]byte
	for _, c := range n.snap.Load().healthy {
		b := make([]byte, 2<<20)
		if _, err := c.dev.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, b)
	}
	if len(sums) != 3 || !bytes.Equal(sums[0], sums[1]) || !bytes.Equal(sums[0], sums[2]) {
		t.Fatalf("children differ after concurrent writes (%d healthy)", len(sums))
	}
	for _, c := range n.snap.Load().healthy {
		if c.async == nil {
			t.Fatalf("child %s has no asynchronous path", c.c.uri)
		}
	}
}
