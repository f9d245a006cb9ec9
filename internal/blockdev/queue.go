package blockdev

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A Queue runs one thread's asynchronous I/O on a ring of its own, so that
// the thread which starts an operation is also the one that learns of its
// completion. On a shared ring the kernel posts an O_DIRECT completion as
// task work to whichever thread submitted it, then wakes the reaper: two
// thread wake-ups per completion on a path where, on a two-vCPU VM, each
// costs tens of microseconds. A server connection that waits for its
// socket and its disk in one place (Wait) pays one. Measured with a
// one-thread NBD server: +15–30 % IOPS at queue depth 32
// (docs/benchmarks.md, The ceiling of any NBD server here).
//
// A Queue belongs to the goroutine that opened it, which must stay locked
// to its OS thread (runtime.LockOSThread) until Close: the ring accepts
// submissions from that thread only. Its IOCompletion callbacks run inside
// Wait and Close, on that goroutine.
type Queue interface {
	// StartQueued and Submit as in Async; Submit hands the started
	// operations to the kernel without waiting.
	Async
	// Wait submits what was started and waits until at least one operation
	// completes or, when fd >= 0, until fd is readable or hung up. It
	// reports every completion (each IODone, then each IOFlush) before it
	// returns, and whether fd was ready. One fd at a time: a poll armed
	// on fd stays armed across calls until it fires.
	Wait(fd int) (ready bool, err error)
	// Inflight is the number of operations started and not yet reported.
	Inflight() int
	// Close waits for the operations in flight (reporting them) and
	// releases the ring.
	Close() error
}

// QueueOpener is implemented by devices that can give a thread a Queue
// (Uring, and pool replicas on one).
type QueueOpener interface {
	// OpenQueue returns a Queue owned by the calling goroutine, which must
	// be locked to its OS thread. It fails with ErrNotSupported when the
	// device cannot (a replica on a pool without io_uring, an old kernel).
	OpenQueue() (Queue, error)
}

// ErrNotSupported: the device cannot do what was asked.
var ErrNotSupported = errors.New("blockdev: not supported by this device")

const (
	// queueEntries is the SQ size of a Queue and the most operations it
	// has in flight.
	queueEntries = 128
	// pollTag is the user_data of a Queue's poll on the caller's fd.
	pollTag = ^uint64(0)
)

// uringQueue is a Queue on a Uring device.
type uringQueue struct {
	u      *Uring
	r      *ring
	ops    [queueEntries]queueOp
	free   []uint16 // indexes of idle ops
	n      int      // operations in flight
	polled int      // fd with an armed poll, or -1
	ready  bool     // the poll fired during the current reap
	fin    []uint16 // operations finished, not yet reported
	spare  []uint16 // fin's other buffer (reap reports one while the other fills)
	reapFn func(uint64, int32)
	closed bool
}

// queueOp is one operation in flight on a uringQueue.
type queueOp struct {
	u     *Uring // the device it addresses (the queue's, or a joined one's)
	cb    IOCompletion
	pin   []byte // caller memory the kernel is using
	off   int64
	done  int
	write bool
	err   error
}

// OpenQueue returns a Queue for the calling goroutine, which must be
// locked to its OS thread (see Queue).
func (u *Uring) OpenQueue() (Queue, error) {
	if !u.gate.enter() {
		return nil, ErrClosed
	}
	defer u.gate.exit()
	// Completions run as task work only when the owner waits in
	// io_uring_enter (DEFER_TASKRUN), never by interrupting it elsewhere.
	r, err := newRingFlags(queueEntries, setupSingleIssuer|setupDeferTaskrun)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	q := &uringQueue{u: u, r: r, polled: -1, free: make([]uint16, queueEntries),
		fin: make([]uint16, 0, queueEntries), spare: make([]uint16, 0, queueEntries)}
	for i := range q.free {
		q.free[i] = uint16(queueEntries - 1 - i)
	}
	q.reapFn = q.reapOne
	return q, nil
}

// StartQueued queues an operation (see Async); false when it cannot run
// asynchronously: p empty, too large or not aligned for O_DIRECT, range
// invalid, the queue full or closed, the device closed.
func (q *uringQueue) StartQueued(write bool, p []byte, off int64, cb IOCompletion) bool {
	return q.startOn(q.u, write, p, off, cb)
}

// startOn is StartQueued for an operation on u, the queue's device or
// one that joined it (JoinQueue).
func (q *uringQueue) startOn(u *Uring, write bool, p []byte, off int64, cb IOCompletion) bool {
	if q.closed || len(q.free) == 0 || len(p) == 0 || len(p) > uringMaxIO || (u.b.direct && !isAligned(p)) ||
		CheckRange(off, int64(len(p)), u.b.bs, u.b.size) != nil {
		return false
	}
	if !u.gate.enter() {
		return false
	}
	i := q.free[len(q.free)-1]
	q.free = q.free[:len(q.free)-1]
	q.ops[i] = queueOp{u: u, cb: cb, pin: p, off: off, write: write}
	q.push(i)
	q.n++
	if q.r.unsubmitted() >= submitChunk {
		q.Submit()
	}
	return true
}

// push queues the SQE for the rest of operation i.
func (q *uringQueue) push(i uint16) {
	o := &q.ops[i]
	rest := o.pin[o.done:]
	op := uint8(opRead)
	if o.write {
		op = opWrite
	}
	q.r.push(&sqe{opcode: op, fd: int32(o.u.b.fd), off: uint64(o.off + int64(o.done)),
		addr: uint64(uintptr(unsafe.Pointer(&rest[0]))), len: uint32(len(rest)), userData: uint64(i)})
}

// Submit hands the queued operations to the kernel.
func (q *uringQueue) Submit() {
	if q.r == nil || q.r.unsubmitted() == 0 {
		return
	}
	if err := q.r.submitThrough(atomic.LoadUint32(q.r.sqTail)); err != nil {
		q.failQueued(err)
	}
}

// Inflight is the number of operations started and not yet reported.
func (q *uringQueue) Inflight() int { return q.n }

// Wait submits and waits (see Queue).
func (q *uringQueue) Wait(fd int) (bool, error) {
	if q.r == nil {
		return false, ErrClosed
	}
	if fd >= 0 && q.polled != fd {
		if q.polled >= 0 {
			return false, fmt.Errorf("blockdev: queue: poll armed on fd %d, asked for %d", q.polled, fd)
		}
		q.r.push(&sqe{opcode: opPollAdd, fd: int32(fd), opFlags: unix.POLLIN | unix.POLLRDHUP, userData: pollTag})
		q.polled = fd
	}
	if q.n == 0 && q.polled < 0 {
		return false, nil // nothing could complete
	}
	for {
		errno := q.r.enter(q.r.unsubmitted(), 1, enterGetEvents)
		switch errno {
		case 0, unix.EINTR, unix.EAGAIN, unix.EBUSY:
		default:
			err := fmt.Errorf("blockdev: queue io_uring_enter: %w", errno)
			q.failQueued(err)
			return false, err
		}
		if atomic.LoadUint32(q.r.cqHead) != atomic.LoadUint32(q.r.cqTail) {
			break
		}
	}
	return q.reap(), nil
}

// reap reports every posted completion and re-queues short transfers; it
// returns whether the poll fired.
func (q *uringQueue) reap() bool {
	q.ready = false
	q.r.reap(q.reapFn)
	if q.r.unsubmitted() > 0 { // rests of short transfers
		q.Submit()
	}
	fin := q.fin
	q.fin = q.spare
	for _, i := range fin {
		o := &q.ops[i]
		o.cb.IODone(o.done, o.err)
	}
	for _, i := range fin {
		o := &q.ops[i]
		cb, u := o.cb, o.u
		*o = queueOp{}
		q.free = append(q.free, i)
		q.n--
		cb.IOFlush()
		u.gate.exit()
	}
	q.spare = fin[:0]
	return q.ready
}

// reapOne accounts one CQE (q.reapFn).
func (q *uringQueue) reapOne(ud uint64, res int32) {
	if ud == pollTag {
		q.polled, q.ready = -1, true
		return
	}
	i := uint16(ud)
	o := &q.ops[i]
	switch {
	case res == -int32(unix.EINTR) || res == -int32(unix.EAGAIN):
		q.push(i)
		return
	case res <= 0:
		var cause error = errShort
		if res < 0 {
			cause = unix.Errno(-res)
		}
		o.err = ioErr(opName(o.write), o.u.b.path, o.off+int64(o.done), cause)
	default:
		o.done += int(res)
		if o.done < len(o.pin) {
			q.push(i)
			return
		}
	}
	q.fin = append(q.fin, i)
}

// failQueued fails the operations whose SQEs the kernel did not take
// (submission error): they are reported by the next reap. A queue in that
// state is broken; its owner should close it.
func (q *uringQueue) failQueued(err error) {
	head, tail := atomic.LoadUint32(q.r.sqHead), atomic.LoadUint32(q.r.sqTail)
	for t := head; t != tail; t++ {
		e := (*sqe)(unsafe.Pointer(&q.r.sqeMem[(t&q.r.sqMask)*sqeSize]))
		if e.userData == pollTag {
			q.polled = -1
			continue
		}
		i := uint16(e.userData)
		q.ops[i].err = err
		q.fin = append(q.fin, i)
	}
	// Withdraw them: the kernel consumes only up to the tail it is given,
	// and nothing else publishes on this ring.
	atomic.StoreUint32(q.r.sqTail, head)
	q.closed = true
}

// Close waits for the operations in flight and releases the ring. Later
// calls do nothing.
func (q *uringQueue) Close() error {
	if q.r == nil {
		return nil
	}
	q.closed = true
	for q.n > 0 {
		if len(q.fin) > 0 { // failed by failQueued
			q.reap()
			continue
		}
		if _, err := q.Wait(-1); err != nil {
			q.reap()
			if q.n > 0 {
				return err // the kernel still owns buffers: keep the ring
			}
		}
	}
	err := q.r.close()
	q.r = nil
	return err
}

// QueueJoiner is implemented by devices that can start their operations
// on a Queue another device opened (Uring, pool replicas on one, handles
// on those), so that one thread waits for the I/O of several devices, and
// its socket, in one place: a nexus over several children.
type QueueJoiner interface {
	// JoinQueue returns a view of q that starts this device's operations
	// on q's ring; q's owner keeps waiting on and closing q itself (the
	// view's Wait, Inflight and Close are q's, its Close does nothing).
	// ErrNotSupported when q is not a ring this device can use.
	JoinQueue(q Queue) (Queue, error)
}

// QueueWrapper is a Queue that adds to another (a pool replica's offset
// translation, an engine handle's closed check): Unwrap returns it.
type QueueWrapper interface {
	Unwrap() Queue
}

// JoinQueue returns a view of q, which must be (or wrap) a Uring's queue,
// that starts u's operations on q's ring (see QueueJoiner).
func (u *Uring) JoinQueue(q Queue) (Queue, error) {
	for {
		switch b := q.(type) {
		case *uringQueue:
			return &uringView{q: b, u: u}, nil
		case *uringView:
			return &uringView{q: b.q, u: u}, nil
		case QueueWrapper:
			q = b.Unwrap()
		default:
			return nil, fmt.Errorf("%w: %T is not an io_uring queue", ErrNotSupported, q)
		}
	}
}

// uringView is a view of a uringQueue that starts u's operations on it.
type uringView struct {
	q *uringQueue
	u *Uring
}

func (v *uringView) StartQueued(write bool, p []byte, off int64, cb IOCompletion) bool {
	return v.q.startOn(v.u, write, p, off, cb)
}
func (v *uringView) Submit()                   { v.q.Submit() }
func (v *uringView) Wait(fd int) (bool, error) { return v.q.Wait(fd) }
func (v *uringView) Inflight() int             { return v.q.Inflight() }

// Close does nothing: the queue's owner closes the queue.
func (v *uringView) Close() error { return nil }

var (
	_ QueueOpener = (*Uring)(nil)
	_ QueueJoiner = (*Uring)(nil)
)

// WaitFd waits on q (reporting its completions) until fd is readable or
// hung up, or nothing is in flight on q any more.
func WaitFd(q Queue, fd int) error {
	for {
		ready, err := q.Wait(fd)
		if err != nil || ready || q.Inflight() == 0 {
			return err
		}
	}
}

// threadQueues counts the queues open through OpenThreadQueue in this
// process, for the process's owner (SetThreadQueueHook).
var threadQueues struct {
	mu   sync.Mutex // guards n and hook; held while the hook runs
	n    int
	hook func(open int)
}

// SetThreadQueueHook installs f (nil removes it): it is called, in order,
// with the number of thread queues open after each OpenThreadQueue and
// CloseThreadQueue, and once now. A thread queue's owner spends its idle
// time blocked in io_uring_enter, holding a P in syscall state; the
// engine uses the count to keep a P free for everything else (cli,
// engineGOMAXPROCS). f must not open or close thread queues.
func SetThreadQueueHook(f func(open int)) {
	threadQueues.mu.Lock()
	defer threadQueues.mu.Unlock()
	threadQueues.hook = f
	if f != nil {
		f(threadQueues.n)
	}
}

// ThreadQueues returns the number of thread queues open.
func ThreadQueues() int {
	threadQueues.mu.Lock()
	defer threadQueues.mu.Unlock()
	return threadQueues.n
}

func countThreadQueues(delta int) {
	threadQueues.mu.Lock()
	defer threadQueues.mu.Unlock()
	threadQueues.n += delta
	if threadQueues.hook != nil {
		threadQueues.hook(threadQueues.n)
	}
}

// OpenThreadQueue locks the calling goroutine to its OS thread and opens
// a Queue of qo for it; on failure the thread is unlocked again. The
// caller owns the lock until CloseThreadQueue.
func OpenThreadQueue(qo QueueOpener) (Queue, error) {
	runtime.LockOSThread()
	q, err := qo.OpenQueue()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	countThreadQueues(1)
	return q, nil
}

// CloseThreadQueue closes a queue from OpenThreadQueue (reporting what is
// still in flight) and unlocks the thread.
func CloseThreadQueue(q Queue) error {
	defer runtime.UnlockOSThread()
	defer countThreadQueues(-1)
	return q.Close()
}
