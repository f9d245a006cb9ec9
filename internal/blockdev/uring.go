package blockdev

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// uringEntries is the SQ size and the maximum number of operations a
	// Uring device has in flight; more concurrent callers wait for a slot.
	uringEntries = 64
	// uringLead, sent on a slot's done channel instead of a result, tells a
	// waiting submitter to take over reaping.
	uringLead = int32(math.MinInt32)
	// uringMaxIO caps the bytes of one SQE (the length field is 32 bits).
	uringMaxIO = 1 << 30
)

// submitChunk is the most operations StartQueued holds back: once that
// many wait, they go to the kernel at once instead of with the caller's
// Submit. A whole queue's worth in one io_uring_enter reaches this VM's
// disk as one burst (plugged, one notification), so the disk drains and
// refills in waves: a closed loop at queue depth 32 (kura bench
// uring://) did 77-81k IOPS that way and 90-91k in chunks of 8, fio
// 100-103k (docs/blockdev-bench.md, Submission chunks).
const submitChunk = 8

// uringSlot is the per-operation state of one in-flight request. Slots are
// preallocated and recycled through Uring.free, so I/O does not allocate.
type uringSlot struct {
	idx    uint64     // user_data of this slot's SQEs
	done   chan int32 // capacity 1: the CQE result, or uringLead
	pin    []byte     // caller memory the kernel is using (kept reachable, forced to the heap)
	bounce []byte     // aligned buffer for unaligned caller memory

	// Asynchronous operations (Start); cb is nil for synchronous ones.
	cb    IOCompletion
	write bool
	off   int64 // device offset of pin[0]
	n     int   // bytes of pin transferred so far
	err   error // set when the operation failed
}

// Uring is a block device driven through a hand-written io_uring. Any number
// of goroutines submit; there is no reaper goroutine. A submitter takes a
// free slot and queues its SQE under mu. If no one is reaping, it becomes
// the leader: one io_uring_enter submits and waits for completions, and it
// reaps the CQ, handing other submitters' results to their slot channels,
// until its own completion arrives; then it passes the lead to a waiting
// submitter (a uringLead token on that slot's channel), if any. Otherwise it
// submits with io_uring_enter (no wait) and sleeps on its slot's channel.
// At queue depth 1 an I/O thus costs one system call and no goroutine
// hand-off. mu is held only to queue SQEs and update the leader state,
// never across a system call.
type Uring struct {
	b    *backing
	r    *ring
	gate *gate // calls in flight vs Close

	mu      sync.Mutex // guards the SQ tail and SQE array (ring.push), reaping and waiting
	reaping bool       // a submitter (or the async reaper) is leading (reaps the CQ)
	waiting uint64     // slots whose submitter waits on its channel (bit = slot index)
	async   int        // asynchronous operations in flight
	started bool       // the async reaper goroutine runs

	kick      chan struct{} // capacity 1: hands the lead to the async reaper
	stop      chan struct{} // closed by Close: the async reaper exits
	reaperEnd chan struct{} // closed when the async reaper has exited

	free      chan *uringSlot // idle slots
	slots     []uringSlot
	bounceMem []byte // mmap backing all slots' bounce buffers
}

var (
	_ Device     = (*Uring)(nil)
	_ Allocation = (*Uring)(nil)
)

// OpenUring opens a regular file or block device as an io_uring Device.
// Options are as for OpenFile.
func OpenUring(path string, opts FileOptions) (*Uring, error) {
	b, err := openBacking(path, opts.BlockSize, opts.Buffered)
	if err != nil {
		return nil, err
	}
	r, err := newRing(uringEntries)
	if err != nil {
		b.close()
		return nil, err
	}
	n := int(r.entries)
	if n > 64 {
		n = 64 // Uring.waiting has one bit per slot
	}
	mem, err := unix.Mmap(-1, 0, n*bounceSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		r.close()
		b.close()
		return nil, fmt.Errorf("blockdev: uring bounce buffers: %w", err)
	}
	u := &Uring{b: b, r: r, gate: newGate(), free: make(chan *uringSlot, n),
		slots: make([]uringSlot, n), bounceMem: mem,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), reaperEnd: make(chan struct{})}
	for i := range u.slots {
		s := &u.slots[i]
		s.idx = uint64(i)
		s.done = make(chan int32, 1)
		s.bounce = mem[i*bounceSize : (i+1)*bounceSize : (i+1)*bounceSize]
		u.free <- s
	}
	return u, nil
}

// openUring opens uring:///path?blk_size=N.
func openUring(_ context.Context, u *url.URL) (Device, error) {
	path, bs, err := localPathParams(u)
	if err != nil {
		return nil, err
	}
	return OpenUring(path, FileOptions{BlockSize: bs})
}

// do submits e on slot s and waits for its completion result.
func (u *Uring) do(s *uringSlot, e *sqe) int32 {
	e.userData = s.idx
	bit := uint64(1) << s.idx
	u.mu.Lock()
	tail := u.r.push(e)
	lead := !u.reaping
	if lead {
		u.reaping = true
	} else {
		u.waiting |= bit
	}
	u.mu.Unlock()
	if !lead {
		// The leader is probably asleep in io_uring_enter: submit now. On
		// failure the SQE stays queued and the leader's next enter submits it.
		if err := u.r.submitThrough(tail); err != nil {
			slog.Error("blockdev: uring submit", "path", u.b.path, "err", err)
		}
		res := <-s.done
		if res != uringLead {
			return res
		}
	}
	return u.lead(s)
}

// lead reaps completions until s's own arrives (s == nil: the async
// reaper, until no asynchronous operation is in flight), delivering the
// others' results; then it hands the lead to a waiting submitter, or to the
// async reaper while asynchronous operations are in flight, or gives it up.
func (u *Uring) lead(s *uringSlot) int32 {
	var (
		mine  int32
		done  bool
		batch [2 * uringEntries]struct {
			ud  uint64
			res int32
		}
		fin [2 * uringEntries]*uringSlot // async operations that finished
	)
	own := ^uint64(0)
	if s != nil {
		own = s.idx
	}
	wait := u.r.submitAndWait
	if s == nil {
		wait = u.r.waitCompletion // the async reaper parks in the netpoller
	}
	for !done {
		if err := wait(); err != nil {
			slog.Error("blockdev: uring wait", "path", u.b.path, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		n, nf := 0, 0
		got := false
		u.r.reap(func(ud uint64, res int32) {
			if ud == own {
				mine, got = res, true
			} else if n < len(batch) {
				batch[n].ud, batch[n].res = ud, res
				n++
			}
		})
		var (
			handTo   *uringSlot
			kick     bool
			resubmit uint32
		)
		u.mu.Lock()
		for i := 0; i < n; i++ {
			sl := &u.slots[batch[i].ud]
			if sl.cb == nil {
				u.waiting &^= uint64(1) << batch[i].ud
				continue
			}
			if t, again := u.asyncResult(sl, batch[i].res); again {
				resubmit = t
			} else {
				fin[nf] = sl
				nf++
				u.async--
			}
			batch[i].ud = ^uint64(0) // handled here, not a channel delivery
		}
		if got || (s == nil && u.async == 0) {
			done = true
			switch {
			case u.waiting != 0:
				j := bits.TrailingZeros64(u.waiting)
				u.waiting &^= uint64(1) << j
				handTo = &u.slots[j]
			case u.async > 0:
				kick = true
			default:
				u.reaping = false
			}
		}
		u.mu.Unlock()
		if resubmit != 0 {
			if err := u.r.submitThrough(resubmit); err != nil {
				slog.Error("blockdev: uring submit", "path", u.b.path, "err", err)
			}
		}
		for i := 0; i < n; i++ {
			if batch[i].ud != ^uint64(0) {
				u.slots[batch[i].ud].done <- batch[i].res // capacity 1, and empty: its owner is waiting
			}
		}
		u.finishAsync(fin[:nf])
		if handTo != nil {
			handTo.done <- uringLead
		}
		if kick {
			u.kick <- struct{}{} // capacity 1, and empty: one lead token exists
		}
	}
	return mine
}

// asyncResult accounts one completion of asynchronous slot sl (mu held).
// It returns again=true, with the new SQ tail, when the rest of the
// operation was queued again (interrupted or short transfer).
func (u *Uring) asyncResult(sl *uringSlot, res int32) (tail uint32, again bool) {
	switch {
	case res == -int32(unix.EINTR) || res == -int32(unix.EAGAIN):
	case res <= 0:
		var cause error = errShort
		if res < 0 {
			cause = unix.Errno(-res)
		}
		sl.err = ioErr(opName(sl.write), u.b.path, sl.off+int64(sl.n), cause)
		return 0, false
	default:
		sl.n += int(res)
		if sl.n >= len(sl.pin) {
			return 0, false
		}
	}
	return u.r.push(u.asyncSQE(sl)), true
}

// finishAsync frees the slots of finished asynchronous operations and
// reports them: every IODone, then every IOFlush.
func (u *Uring) finishAsync(fin []*uringSlot) {
	if len(fin) == 0 {
		return
	}
	var cbs [2 * uringEntries]IOCompletion
	for i, sl := range fin {
		cb, n, err := sl.cb, sl.n, sl.err
		sl.cb, sl.pin, sl.err = nil, nil, nil
		cbs[i] = cb
		u.free <- sl
		cb.IODone(n, err)
	}
	for i := range fin {
		cbs[i].IOFlush()
		cbs[i] = nil
		u.gate.exit()
	}
}

// Start begins reading (write=false) or writing p at off without waiting;
// cb gets the result on the goroutine that reaps it. It returns false, and
// starts nothing, when the operation cannot run asynchronously (p empty,
// too large or not aligned for O_DIRECT, range invalid, no free slot,
// device closed): the caller then uses ReadAt or WriteAt. p must not be
// touched until cb.IODone.
func (u *Uring) Start(write bool, p []byte, off int64, cb IOCompletion) bool {
	return u.start(write, p, off, cb, true)
}

// StartQueued is Start without telling the kernel: the operation is
// submitted by the next Submit, or earlier by any other submission or wait
// on the ring. A caller starting several operations in a row calls Submit
// once after the last, so one io_uring_enter (and one device notification)
// covers them all. It must call Submit before it waits for any of them.
func (u *Uring) StartQueued(write bool, p []byte, off int64, cb IOCompletion) bool {
	return u.start(write, p, off, cb, false)
}

// Submit submits every queued operation.
func (u *Uring) Submit() {
	if !u.gate.enter() {
		return
	}
	defer u.gate.exit()
	if n := u.r.unsubmitted(); n > 0 {
		if err := u.r.submitThrough(atomic.LoadUint32(u.r.sqTail)); err != nil {
			slog.Error("blockdev: uring submit", "path", u.b.path, "err", err)
		}
	}
}

func (u *Uring) start(write bool, p []byte, off int64, cb IOCompletion, submit bool) bool {
	if len(p) == 0 || len(p) > uringMaxIO || (u.b.direct && !isAligned(p)) ||
		CheckRange(off, int64(len(p)), u.b.bs, u.b.size) != nil {
		return false
	}
	if !u.gate.enter() {
		return false
	}
	var sl *uringSlot
	select {
	case sl = <-u.free:
	default:
		u.gate.exit()
		return false
	}
	sl.cb, sl.write, sl.pin, sl.off, sl.n, sl.err = cb, write, p, off, 0, nil
	e := u.asyncSQE(sl)
	u.mu.Lock()
	tail := u.r.push(e)
	u.async++
	if !u.started {
		u.started = true
		go u.asyncReaper()
	}
	kick := !u.reaping
	if kick {
		u.reaping = true
	}
	u.mu.Unlock()
	if submit || u.r.unsubmitted() >= submitChunk {
		if err := u.r.submitThrough(tail); err != nil {
			slog.Error("blockdev: uring submit", "path", u.b.path, "err", err)
		}
	}
	if kick {
		u.kick <- struct{}{} // capacity 1, and empty: one lead token exists
	}
	return true
}

// asyncReaper leads (reaps completions) whenever it is handed the lead
// while asynchronous operations are in flight. Started by the first Start,
// stopped by Close.
func (u *Uring) asyncReaper() {
	defer close(u.reaperEnd)
	for {
		select {
		case <-u.kick:
			u.lead(nil)
		case <-u.stop:
			return
		}
	}
}

// asyncSQE builds the SQE for the rest of asynchronous slot sl.
func (u *Uring) asyncSQE(sl *uringSlot) *sqe {
	rest := sl.pin[sl.n:]
	op := uint8(opRead)
	if sl.write {
		op = opWrite
	}
	return &sqe{opcode: op, fd: int32(u.b.fd), off: uint64(sl.off + int64(sl.n)),
		addr: uint64(uintptr(unsafe.Pointer(&rest[0]))), len: uint32(len(rest)), userData: sl.idx}
}

// Size returns the device size in bytes.
func (u *Uring) Size() int64 { return u.b.size }

// BlockSize returns the logical block size.
func (u *Uring) BlockSize() int { return u.b.bs }

// Direct reports whether the device uses O_DIRECT.
func (u *Uring) Direct() bool { return u.b.direct }

// String describes the device.
func (u *Uring) String() string { return "uring " + u.b.String() }

// enter checks the range and registers a call; on nil the caller must call
// u.gate.exit.
func (u *Uring) enter(off, length int64) error {
	if err := CheckRange(off, length, u.b.bs, u.b.size); err != nil {
		return err
	}
	if !u.gate.enter() {
		return ErrClosed
	}
	return nil
}

// ReadAt reads len(p) bytes at off.
func (u *Uring) ReadAt(p []byte, off int64) (int, error) {
	if err := u.enter(off, int64(len(p))); err != nil {
		return 0, err
	}
	defer u.gate.exit()
	return u.rw(opRead, p, off)
}

// WriteAt writes p at off.
func (u *Uring) WriteAt(p []byte, off int64) (int, error) {
	if err := u.enter(off, int64(len(p))); err != nil {
		return 0, err
	}
	defer u.gate.exit()
	return u.rw(opWrite, p, off)
}

// rw performs a read or write with one slot, going through the slot's
// bounce buffer when p is not aligned for O_DIRECT.
func (u *Uring) rw(op uint8, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s := <-u.free
	direct := !u.b.direct || isAligned(p)
	done := 0
	for done < len(p) {
		rest := p[done:]
		var buf []byte
		if direct {
			buf = rest[:min(len(rest), uringMaxIO)]
			s.pin = p
		} else {
			buf = s.bounce[:min(len(rest), len(s.bounce))]
			if op == opWrite {
				copy(buf, rest)
			}
		}
		e := sqe{opcode: op, fd: int32(u.b.fd), off: uint64(off + int64(done)),
			addr: uint64(uintptr(unsafe.Pointer(&buf[0]))), len: uint32(len(buf))}
		res := u.do(s, &e)
		s.pin = nil
		if res == -int32(unix.EINTR) || res == -int32(unix.EAGAIN) {
			continue
		}
		if res <= 0 {
			u.free <- s
			var cause error = errShort
			if res < 0 {
				cause = unix.Errno(-res)
			}
			return done, ioErr(opName(op == opWrite), u.b.path, off+int64(done), cause)
		}
		if !direct && op == opRead {
			copy(rest, buf[:res])
		}
		done += int(res)
	}
	u.free <- s
	return done, nil
}

// simple runs one non-data operation (fsync, fallocate) and returns the
// kernel's result as an error (nil for success).
func (u *Uring) simple(e *sqe) error {
	s := <-u.free
	for {
		res := u.do(s, e)
		if res == -int32(unix.EINTR) || res == -int32(unix.EAGAIN) {
			continue
		}
		u.free <- s
		if res < 0 {
			return unix.Errno(-res)
		}
		return nil
	}
}

// Flush makes completed writes durable (IORING_OP_FSYNC with DATASYNC).
func (u *Uring) Flush() error {
	if !u.gate.enter() {
		return ErrClosed
	}
	defer u.gate.exit()
	if err := u.simple(&sqe{opcode: opFsync, fd: int32(u.b.fd), opFlags: fsyncDatasync}); err != nil {
		return ioErr("fdatasync", u.b.path, 0, err)
	}
	return nil
}

// fallocate runs IORING_OP_FALLOCATE.
func (u *Uring) fallocate(mode uint32, off, length int64) error {
	return u.simple(&sqe{opcode: opFallocate, fd: int32(u.b.fd), off: uint64(off), addr: uint64(length), len: mode})
}

// Unmap punches a hole (files, via the ring) or discards (block devices).
func (u *Uring) Unmap(off, length int64) error {
	if err := u.enter(off, length); err != nil {
		return err
	}
	defer u.gate.exit()
	if length == 0 {
		return nil
	}
	if !u.b.block {
		err := u.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
		if !notSupported(err) {
			if err != nil {
				return ioErr("discard", u.b.path, off, err)
			}
			return nil
		}
	}
	return u.b.discard(off, length)
}

// WriteZeroes makes the range read as zeros: fallocate(ZERO_RANGE) through
// the ring, else PUNCH_HOLE, else by writing zeros.
func (u *Uring) WriteZeroes(off, length int64) error {
	if err := u.enter(off, length); err != nil {
		return err
	}
	defer u.gate.exit()
	if length == 0 {
		return nil
	}
	err := u.fallocate(unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	if err == nil {
		return nil
	}
	if !notSupported(err) {
		return ioErr("write zeroes", u.b.path, off, err)
	}
	if ok, err := u.b.zeroRange(off, length); ok || err != nil {
		return err
	}
	return writeZeroesFallback(off, length, func(p []byte, off int64) (int, error) { return u.rw(opWrite, p, off) })
}

// Allocated reports whether the range may hold data (SEEK_DATA on files;
// always true on block devices).
func (u *Uring) Allocated(off, length int64) (bool, error) {
	if err := u.enter(off, length); err != nil {
		return false, err
	}
	defer u.gate.exit()
	return u.b.allocated(off, length)
}

// Close waits for I/O in flight and releases the ring and the descriptor. For a block device it then waits (up to 2 s) until the
// kernel has dropped io_uring's file references, so the device can be
// reopened exclusively at once. Later calls fail with ErrClosed.
func (u *Uring) Close() error {
	if !u.gate.close() {
		return ErrClosed
	}
	close(u.stop)
	u.mu.Lock()
	started := u.started
	u.mu.Unlock()
	if started {
		<-u.reaperEnd
	}
	u.r.close()
	unix.Munmap(u.bounceMem)
	if err := u.b.close(); err != nil {
		return err
	}
	if u.b.block {
		waitReleased(u.b.path, 2*time.Second)
	}
	return nil
}

// waitReleased waits until the block device at path can be claimed
// exclusively again, or until timeout. io_uring drops its references to a
// file asynchronously (after posting the completion, possibly on another
// thread), so right after close the kernel may still hold our O_EXCL claim
// and an immediate reopen would fail with EBUSY.
func waitReleased(path string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
			return
		}
		if err != unix.EBUSY || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
