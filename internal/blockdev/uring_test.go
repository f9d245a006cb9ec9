package blockdev_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

// TestUringConcurrentHandoff runs more concurrent submitters than the ring
// has slots, so the reaping lead passes between submitters many times, and
// checks every block reads back what its owner wrote.
func TestUringConcurrentHandoff(t *testing.T) {
	skipNoUring(t)
	const (
		workers = 96 // > the ring's 64 slots
		rounds  = 40
		bs      = 4096
	)
	d, err := blockdev.OpenUring(tempFile(t, "", workers*bs), blockdev.FileOptions{BlockSize: bs})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := int64(w * bs)
			wbuf, rbuf := make([]byte, bs), make([]byte, bs)
			for r := range rounds {
				for i := range wbuf {
					wbuf[i] = byte(w + r + i)
				}
				if _, err := d.WriteAt(wbuf, off); err != nil {
					errs <- err
					return
				}
				if r%8 == 0 {
					if err := d.Flush(); err != nil {
						errs <- err
						return
					}
				}
				if _, err := d.ReadAt(rbuf, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(wbuf, rbuf) {
					errs <- fmt.Errorf("block at %d: data mismatch in round %d", off, r)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
