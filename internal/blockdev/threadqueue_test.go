package blockdev_test

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

type failOpener struct{}

func (failOpener) OpenQueue() (blockdev.Queue, error) { return nil, errors.New("no queue") }

// TestThreadQueueHook: the hook hears the count of open thread queues
// once when installed and after every open and close, across goroutines;
// a failed open is not counted.
func TestThreadQueueHook(t *testing.T) {
	d, err := blockdev.OpenUring(tempFile(t, "", 1<<20), blockdev.FileOptions{BlockSize: 4096})
	if err != nil {
		t.Skipf("io_uring: %v", err)
	}
	defer d.Close()
	var mu sync.Mutex
	var seen []int
	blockdev.SetThreadQueueHook(func(open int) {
		mu.Lock()
		seen = append(seen, open)
		mu.Unlock()
	})
	defer blockdev.SetThreadQueueHook(nil)

	// Each queue lives on a goroutine of its own (its locked thread);
	// steps run one at a time so the order of counts is fixed.
	step := func(f func()) { done := make(chan struct{}); go func() { f(); close(done) }(); <-done }
	type owner struct {
		cmd  chan string
		done chan error
	}
	start := func() *owner {
		o := &owner{cmd: make(chan string), done: make(chan error)}
		go func() {
			q, err := blockdev.OpenThreadQueue(d)
			o.done <- err
			if err != nil {
				return
			}
			<-o.cmd
			o.done <- blockdev.CloseThreadQueue(q)
		}()
		if err := <-o.done; err != nil {
			t.Skipf("no queue: %v", err)
		}
		return o
	}
	a := start()
	b := start()
	if n := blockdev.ThreadQueues(); n != 2 {
		t.Fatalf("ThreadQueues = %d, want 2", n)
	}
	step(func() {
		if _, err := blockdev.OpenThreadQueue(failOpener{}); err == nil {
			t.Error("open of a failing opener succeeded")
		}
	})
	for _, o := range []*owner{b, a} {
		o.cmd <- "close"
		if err := <-o.done; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{0, 1, 2, 1, 0}; !slices.Equal(seen, want) {
		t.Fatalf("hook saw %v, want %v", seen, want)
	}
}
