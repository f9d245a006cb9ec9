package blockdevtest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// RunQueue runs the conformance suite of blockdev.Queue against devices
// from open, which must implement blockdev.QueueOpener (it skips the test
// when OpenQueue reports ErrNotSupported). Each test runs on a goroutine
// locked to its thread, as a Queue's owner must.
func RunQueue(t *testing.T, open func(t *testing.T) blockdev.Device) {
	tests := []struct {
		name string
		f    func(t *testing.T, d blockdev.Device, q blockdev.Queue)
	}{
		{"RoundTrip", testQueueRoundTrip},
		{"Refuses", testQueueRefuses},
		{"Poll", testQueuePoll},
		{"CloseInFlight", testQueueCloseInFlight},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := open(t)
			t.Cleanup(func() { d.Close() })
			qo, ok := d.(blockdev.QueueOpener)
			if !ok {
				t.Fatalf("%T does not implement blockdev.QueueOpener", d)
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			q, err := qo.OpenQueue()
			if errors.Is(err, blockdev.ErrNotSupported) {
				t.Skipf("no queue: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.f(t, d, q)
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// qop is an IOCompletion that records its calls.
type qop struct {
	n              int
	err            error
	dones, flushes int
}

func (o *qop) IODone(n int, err error) { o.n, o.err = n, err; o.dones++ }
func (o *qop) IOFlush()                { o.flushes++ }

// drain waits until q has nothing in flight.
func drain(t *testing.T, q blockdev.Queue) {
	t.Helper()
	for q.Inflight() > 0 {
		if _, err := q.Wait(-1); err != nil {
			t.Fatal(err)
		}
	}
}

// checkOps fails unless every op was reported exactly once, complete and
// without error.
func checkOps(t *testing.T, ops []qop, n int) {
	t.Helper()
	for i, o := range ops {
		if o.dones != 1 || o.flushes != 1 || o.err != nil || o.n != n {
			t.Fatalf("op %d: IODone %d times, IOFlush %d times, n %d (want %d), err %v", i, o.dones, o.flushes, o.n, n, o.err)
		}
	}
}

// testQueueRoundTrip writes distinct blocks in one batch (a write the
// queue refuses, such as a thin replica's first, goes through WriteAt as
// callers must), reads them back through the queue, which must take every
// read of written blocks, and through ReadAt.
func testQueueRoundTrip(t *testing.T, d blockdev.Device, q blockdev.Queue) {
	const count = 48
	bs := d.BlockSize()
	blocks := int(min(d.Size()/int64(bs), 4096))
	offs := rand.Perm(blocks)[:count]
	wbufs, rbufs := make([][]byte, count), make([][]byte, count)
	ops := make([]qop, count)
	for i := range count {
		wbufs[i] = blockdev.AlignedBuffer(bs)
		copy(wbufs[i], pattern(uint64(i+1), bs))
		if !q.StartQueued(true, wbufs[i], int64(offs[i]*bs), &ops[i]) {
			mustWrite(t, d, wbufs[i], int64(offs[i]*bs))
			ops[i] = qop{n: bs, dones: 1, flushes: 1}
		}
	}
	drain(t, q)
	checkOps(t, ops, bs)
	clear(ops)
	for i := range count {
		rbufs[i] = blockdev.AlignedBuffer(bs)
		if !q.StartQueued(false, rbufs[i], int64(offs[i]*bs), &ops[i]) {
			t.Fatalf("read %d of a written block refused", i)
		}
		if i%8 == 7 {
			q.Submit()
		}
	}
	if q.Inflight() != count {
		t.Fatalf("Inflight %d, want %d", q.Inflight(), count)
	}
	drain(t, q)
	checkOps(t, ops, bs)
	for i := range count {
		expectEqual(t, "queue read", rbufs[i], wbufs[i], bs)
		expectEqual(t, "ReadAt after queue write", mustRead(t, d, bs, int64(offs[i]*bs)), wbufs[i], bs)
	}
}

// testQueueRefuses: what cannot run asynchronously starts nothing.
func testQueueRefuses(t *testing.T, d blockdev.Device, q blockdev.Queue) {
	bs := d.BlockSize()
	var o qop
	if q.StartQueued(false, nil, 0, &o) {
		t.Fatal("empty buffer started")
	}
	if q.StartQueued(false, blockdev.AlignedBuffer(bs), d.Size(), &o) {
		t.Fatal("read past the end started")
	}
	if q.StartQueued(true, blockdev.AlignedBuffer(bs), 1, &o) {
		t.Fatal("misaligned offset started")
	}
	if q.Inflight() != 0 || o.dones+o.flushes != 0 {
		t.Fatalf("refused starts left %d in flight, %d callbacks", q.Inflight(), o.dones+o.flushes)
	}
	if ready, err := q.Wait(-1); ready || err != nil {
		t.Fatalf("Wait with nothing to wait for: ready %v, err %v", ready, err)
	}
}

// testQueuePoll: Wait returns for a readable descriptor, for completions
// while the descriptor stays quiet, and for a descriptor written from
// another thread while I/O runs.
func testQueuePoll(t *testing.T, d blockdev.Device, q blockdev.Queue) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	rc, err := pr.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })

	bs := d.BlockSize()
	buf := blockdev.AlignedBuffer(bs)
	mustWrite(t, d, buf, 0) // a thin replica reads unwritten space synchronously
	var o qop
	if !q.StartQueued(false, buf, 0, &o) {
		t.Fatal("read refused")
	}
	for q.Inflight() > 0 { // the pipe stays empty: completions end the waits
		ready, err := q.Wait(fd)
		if err != nil || ready {
			t.Fatalf("Wait: ready %v (nothing was written), err %v", ready, err)
		}
	}
	checkOps(t, []qop{o}, bs)

	go func() {
		time.Sleep(20 * time.Millisecond)
		pw.Write([]byte{1})
	}()
	start := time.Now()
	ready, err := q.Wait(fd) // the poll armed above is still armed
	if err != nil || !ready {
		t.Fatalf("Wait for the pipe: ready %v, err %v", ready, err)
	}
	if time.Since(start) < 10*time.Millisecond {
		t.Fatalf("Wait returned after %v, before the pipe was written", time.Since(start))
	}
	var b [1]byte
	pr.Read(b[:])

	// Ready again at once when data already waits.
	pw.Write([]byte{2})
	if ready, err := q.Wait(fd); err != nil || !ready {
		t.Fatalf("Wait on a readable pipe: ready %v, err %v", ready, err)
	}
	pr.Read(b[:])
}

// testQueueCloseInFlight: Close reports every operation still in flight.
func testQueueCloseInFlight(t *testing.T, d blockdev.Device, q blockdev.Queue) {
	bs := d.BlockSize()
	ops := make([]qop, 16)
	want := pattern(7, bs)
	for i := range ops { // overwrites: a thin replica refuses first writes
		mustWrite(t, d, make([]byte, bs), int64(i*bs))
	}
	for i := range ops {
		b := blockdev.AlignedBuffer(bs)
		copy(b, want)
		if !q.StartQueued(true, b, int64(i*bs), &ops[i]) {
			t.Fatalf("write %d refused", i)
		}
	}
	q.Submit()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	checkOps(t, ops, bs)
	for i := range ops {
		if got := mustRead(t, d, bs, int64(i*bs)); !bytes.Equal(got, want) {
			t.Fatalf("block %d not written before Close returned", i)
		}
	}
	var o qop
	if q.StartQueued(false, blockdev.AlignedBuffer(bs), 0, &o) {
		t.Fatal("StartQueued after Close started")
	}
}
