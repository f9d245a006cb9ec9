package blockdev

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Minimal io_uring bindings written against the kernel ABI
// (include/uapi/linux/io_uring.h); x/sys/unix only has the syscall numbers.

// io_uring opcodes used here.
const (
	opNop       = 0  // IORING_OP_NOP
	opFsync     = 3  // IORING_OP_FSYNC
	opFallocate = 17 // IORING_OP_FALLOCATE
	opRead      = 22 // IORING_OP_READ
	opWrite     = 23 // IORING_OP_WRITE
	opPollAdd   = 6  // IORING_OP_POLL_ADD
)

const (
	fsyncDatasync     = 1 << 0     // IORING_FSYNC_DATASYNC
	enterGetEvents    = 1 << 0     // IORING_ENTER_GETEVENTS
	featSingleMmap    = 1 << 0     // IORING_FEAT_SINGLE_MMAP
	offSQRing         = 0          // IORING_OFF_SQ_RING
	offCQRing         = 0x8000000  // IORING_OFF_CQ_RING
	offSQEs           = 0x10000000 // IORING_OFF_SQES
	sqeSize           = 64
	cqeSize           = 16
	uringParamsLength = 120
	registerEventfd   = 4       // IORING_REGISTER_EVENTFD
	setupSingleIssuer = 1 << 12 // IORING_SETUP_SINGLE_ISSUER
	setupDeferTaskrun = 1 << 13 // IORING_SETUP_DEFER_TASKRUN
)

// sqOffsets is struct io_sqring_offsets.
type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

// cqOffsets is struct io_cqring_offsets.
type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// uringParams is struct io_uring_params.
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64
	addr     uint64
	len      uint32
	opFlags  uint32 // rw_flags / fsync_flags / ...
	userData uint64
	bufIndex uint16
	personal uint16
	spliceFd int32
	addr3    uint64
	pad      uint64
}

// cqe is struct io_uring_cqe (16 bytes).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

var (
	_ [uringParamsLength - unsafe.Sizeof(uringParams{})]byte
	_ [sqeSize - unsafe.Sizeof(sqe{})]byte
	_ [cqeSize - unsafe.Sizeof(cqe{})]byte
)

// ring is one io_uring instance: the shared SQ and CQ rings and the SQE
// array. It is not safe for concurrent use by itself: submit needs external
// serialisation, and only one goroutine may reap.
type ring struct {
	fd      int
	sqMem   []byte // SQ ring mmap (also the CQ ring with FEAT_SINGLE_MMAP)
	cqMem   []byte // CQ ring mmap when separate, else nil
	sqeMem  []byte // SQE array mmap
	sqHead  *uint32
	sqTail  *uint32
	sqMask  uint32
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    unsafe.Pointer
	entries uint32
	// ev is an eventfd the kernel signals for every posted completion, in
	// the Go netpoller: a goroutine waiting on it parks without holding a
	// thread or a P (nil if it could not be registered).
	ev *os.File
}

// newRing sets up an io_uring with the given number of SQ entries (a power
// of two); the kernel sizes the CQ at twice that.
func newRing(entries uint32) (*ring, error) {
	r, err := newRingFlags(entries, 0)
	if err != nil {
		return nil, err
	}
	r.ev = newCompletionEvent(r.fd)
	return r, nil
}

// newRingFlags sets up an io_uring with the given setup flags and no
// completion eventfd.
func newRingFlags(entries, flags uint32) (*ring, error) {
	p := uringParams{flags: flags}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("blockdev: io_uring_setup: %w", errno)
	}
	r := &ring{fd: int(fd), entries: p.sqEntries}
	if err := r.mmap(&p); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// newCompletionEvent creates a non-blocking eventfd and registers it with
// ring fd, or returns nil when either fails (waitCompletion then falls back
// to a blocking io_uring_enter).
func newCompletionEvent(ringFd int) *os.File {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil
	}
	fd32 := int32(efd)
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(ringFd), registerEventfd, uintptr(unsafe.Pointer(&fd32)), 1, 0, 0); errno != 0 {
		unix.Close(efd)
		return nil
	}
	return os.NewFile(uintptr(efd), "io_uring-eventfd") // non-blocking: the runtime polls it
}

// waitCompletion submits every published SQE and waits until at least one
// completion is posted. With the eventfd, the wait parks the goroutine in
// the netpoller: no thread sleeps in io_uring_enter holding a P, so the
// runtime neither hands that P off nor keeps sysmon polling at its
// shortest interval to retake it.
func (r *ring) waitCompletion() error {
	if r.ev == nil {
		return r.submitAndWait()
	}
	var buf [8]byte
	for {
		if r.unsubmitted() > 0 {
			if err := r.submitThrough(atomic.LoadUint32(r.sqTail)); err != nil {
				return err
			}
		}
		if atomic.LoadUint32(r.cqHead) != atomic.LoadUint32(r.cqTail) {
			return nil
		}
		// A completion posted after the check above bumps the counter, so
		// this read returns at once; a stale count only costs a loop.
		if _, err := r.ev.Read(buf[:]); err != nil {
			return fmt.Errorf("blockdev: io_uring eventfd: %w", err)
		}
	}
}

func (r *ring) mmap(p *uringParams) error {
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*cqeSize)
	single := p.features&featSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	prot, flags := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE
	if r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("blockdev: io_uring mmap sq ring: %w", err)
	}
	cqMem := r.sqMem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, prot, flags); err != nil {
			return fmt.Errorf("blockdev: io_uring mmap cq ring: %w", err)
		}
		cqMem = r.cqMem
	}
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*sqeSize, prot, flags); err != nil {
		return fmt.Errorf("blockdev: io_uring mmap sqes: %w", err)
	}
	u32 := func(m []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&m[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(r.sqMem, p.sqOff.head), u32(r.sqMem, p.sqOff.tail), *u32(r.sqMem, p.sqOff.ringMask)
	r.cqHead, r.cqTail, r.cqMask = u32(cqMem, p.cqOff.head), u32(cqMem, p.cqOff.tail), *u32(cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Pointer(&cqMem[p.cqOff.cqes])
	// Identity SQ index array: slot i of the ring always names SQE i.
	for i := uint32(0); i < p.sqEntries; i++ {
		*u32(r.sqMem, p.sqOff.array+4*i) = i
	}
	return nil
}

// push copies e into the next SQE and publishes it (the kernel sees it at
// the next io_uring_enter). It returns the SQ tail after e. Callers
// serialise push and keep at most r.entries operations in flight, so the SQ
// never fills.
func (r *ring) push(e *sqe) uint32 {
	tail := *r.sqTail // only pushers write the tail, one at a time
	*(*sqe)(unsafe.Pointer(&r.sqeMem[(tail&r.sqMask)*sqeSize])) = *e
	atomic.StoreUint32(r.sqTail, tail+1) // publish the SQE (release)
	return tail + 1
}

// unsubmitted returns the number of published SQEs the kernel has not
// consumed yet.
func (r *ring) unsubmitted() uint32 {
	return atomic.LoadUint32(r.sqTail) - atomic.LoadUint32(r.sqHead)
}

// enter calls io_uring_enter. It may run concurrently with other enter
// calls (the kernel serialises submission) and submits at most what is
// published.
func (r *ring) enter(toSubmit, minComplete, flags uint32) unix.Errno {
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	return errno
}

// submitThrough makes the kernel consume every SQE before tail (a value
// returned by push), without waiting for completions.
func (r *ring) submitThrough(tail uint32) error {
	for {
		head := atomic.LoadUint32(r.sqHead)
		if int32(tail-head) <= 0 {
			return nil // consumed, possibly by another caller's enter
		}
		switch errno := r.enter(atomic.LoadUint32(r.sqTail)-head, 0, 0); errno {
		case 0, unix.EINTR, unix.EAGAIN, unix.EBUSY:
		default:
			return fmt.Errorf("blockdev: io_uring_enter submit: %w", errno)
		}
	}
}

// submitAndWait submits every published SQE and waits until at least one
// completion is posted, in one io_uring_enter.
func (r *ring) submitAndWait() error {
	for {
		if atomic.LoadUint32(r.cqHead) != atomic.LoadUint32(r.cqTail) && r.unsubmitted() == 0 {
			return nil
		}
		switch errno := r.enter(r.unsubmitted(), 1, enterGetEvents); errno {
		case 0:
			if atomic.LoadUint32(r.cqHead) != atomic.LoadUint32(r.cqTail) {
				return nil
			}
		case unix.EINTR, unix.EAGAIN, unix.EBUSY:
		default:
			return fmt.Errorf("blockdev: io_uring_enter wait: %w", errno)
		}
	}
}

// reap calls f for every posted completion and releases them to the kernel.
func (r *ring) reap(f func(userData uint64, res int32)) {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail) // acquire: CQEs up to tail are visible
	for ; head != tail; head++ {
		c := (*cqe)(unsafe.Add(r.cqes, uintptr(head&r.cqMask)*cqeSize))
		ud, res := c.userData, c.res
		atomic.StoreUint32(r.cqHead, head+1) // give the CQE back
		f(ud, res)
	}
}

func (r *ring) close() error {
	if r.ev != nil {
		r.ev.Close()
	}
	for _, m := range [][]byte{r.sqeMem, r.cqMem, r.sqMem} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	return unix.Close(r.fd)
}
