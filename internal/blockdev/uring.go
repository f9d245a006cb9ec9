package blockdev

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// uringEntries is the SQ size and the maximum number of operations a
	// Uring device has in flight; more concurrent callers wait for a slot.
	uringEntries = 64
	// uringStop is the user_data of the NOP that stops the reaper.
	uringStop = ^uint64(0)
	// uringMaxIO caps the bytes of one SQE (the length field is 32 bits).
	uringMaxIO = 1 << 30
)

// uringSlot is the per-operation state of one in-flight request. Slots are
// preallocated and recycled through Uring.free, so I/O does not allocate.
type uringSlot struct {
	idx    uint64     // user_data of this slot's SQEs
	done   chan int32 // capacity 1; the reaper sends the CQE result
	pin    []byte     // caller memory the kernel is using (kept reachable, forced to the heap)
	bounce []byte     // aligned buffer for unaligned caller memory
}

// Uring is a block device driven through a hand-written io_uring. Any number
// of goroutines submit: a submitter takes a free slot, queues its SQE under
// subMu (held only while queueing and calling io_uring_enter to submit, never
// while waiting), and sleeps on the slot's channel. One reaper goroutine,
// owned by the device and stopped by Close, waits for completions and wakes
// the submitters.
type Uring struct {
	b    *backing
	r    *ring
	gate *gate // calls in flight vs Close

	subMu sync.Mutex // guards the SQ tail and SQE array (ring.submit)

	free      chan *uringSlot // idle slots
	slots     []uringSlot
	bounceMem []byte        // mmap backing all slots' bounce buffers
	reaped    chan struct{} // closed when the reaper exits
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
	mem, err := unix.Mmap(-1, 0, n*bounceSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		r.close()
		b.close()
		return nil, fmt.Errorf("blockdev: uring bounce buffers: %w", err)
	}
	u := &Uring{b: b, r: r, gate: newGate(), free: make(chan *uringSlot, n),
		slots: make([]uringSlot, n), bounceMem: mem, reaped: make(chan struct{})}
	for i := range u.slots {
		s := &u.slots[i]
		s.idx = uint64(i)
		s.done = make(chan int32, 1)
		s.bounce = mem[i*bounceSize : (i+1)*bounceSize : (i+1)*bounceSize]
		u.free <- s
	}
	go u.reaper()
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

// reaper delivers completions to the waiting submitters until it reaps the
// stop NOP queued by Close.
func (u *Uring) reaper() {
	defer close(u.reaped)
	stop := false
	for !stop {
		if err := u.r.wait(); err != nil {
			slog.Error("blockdev: uring reaper", "path", u.b.path, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		u.r.reap(func(ud uint64, res int32) {
			if ud == uringStop {
				stop = true
				return
			}
			u.slots[ud].done <- res
		})
	}
}

// do submits e on slot s and waits for its completion. A non-nil error
// means the submission failed; the slot must then not be reused.
func (u *Uring) do(s *uringSlot, e *sqe) (int32, error) {
	e.userData = s.idx
	u.subMu.Lock()
	err := u.r.submit(e)
	u.subMu.Unlock()
	if err != nil {
		return 0, err
	}
	return <-s.done, nil
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
		res, err := u.do(s, &e)
		s.pin = nil
		if err != nil {
			return done, err // slot leaked on purpose: its SQE may still complete
		}
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
		res, err := u.do(s, e)
		if err != nil {
			return err
		}
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

// Close waits for I/O in flight, stops the reaper and releases the ring and
// the descriptor. For a block device it then waits (up to 2 s) until the
// kernel has dropped io_uring's file references, so the device can be
// reopened exclusively at once. Later calls fail with ErrClosed.
func (u *Uring) Close() error {
	if !u.gate.close() {
		return ErrClosed
	}
	u.subMu.Lock()
	err := u.r.submit(&sqe{opcode: opNop, userData: uringStop})
	u.subMu.Unlock()
	if err != nil {
		// The reaper cannot be woken; leave the ring mapped for it.
		u.b.close()
		return fmt.Errorf("blockdev: uring close %s: %w", u.b.path, err)
	}
	<-u.reaped
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
