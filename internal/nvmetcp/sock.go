package nvmetcp

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kura-io/kura/internal/rawsock"
)

// qsock is a queue's socket, in one of two modes (like the NBD server's,
// internal/nbd/sock.go).
//
// Netpoll mode: nc, the net.Conn, registered with the Go runtime's epoll.
// Raw mode (ring mode only, ring.go): fd, a duplicate of the socket, and
// nc closed, which takes the descriptor out of the runtime's epoll. The
// reader waits for it in its own io_uring or in poll(2); writers loop on
// write(2) and poll(2).
//
// The reader switches modes (enterRaw, leaveRaw) holding the queue's
// out.mu while the writer is idle (nothing buffered, pending or being
// written), so no write is under way, and mu against shutdown. Writers
// read the mode holding out.mu, or while they own the flush (they set
// batchWriter.flushing under out.mu). A raw descriptor is never closed
// while another goroutine may use it: shutdown uses shutdown(2), which
// wakes the reader and fails writers; close, at the end of serve, closes
// it.
type qsock struct {
	// mu guards nc, rc, fd, raw, down and closed against shutdown and
	// close (see above for the other rules). Never held across blocking
	// I/O.
	mu     sync.Mutex
	nc     net.Conn        // netpoll mode; the closed original in raw mode
	rc     syscall.RawConn // nc's (netpoll mode, sockets only)
	fd     int             // raw mode: the duplicated descriptor, else -1
	raw    bool
	down   bool // shutdown ran: the mode stays as it is
	closed bool

	// socket: the connection is a socket with a RawConn (fixed at init).
	// Other connections (net.Pipe in tests) stay in netpoll mode and have
	// no direct write path.
	socket bool

	// wdeadline is when raw writes start failing (UnixNano, 0 = none),
	// like SetWriteDeadline in netpoll mode.
	wdeadline atomic.Int64
	wfds      [1]unix.PollFd   // the socket writer's poll scratch
	iov       [4]syscall.Iovec // and its writev scratch (batchWriter.vec's size)
	rfds      [1]unix.PollFd   // the reader's
}

func (s *qsock) init(c net.Conn) {
	s.nc, s.fd = c, -1
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc, s.socket = rc, true
		}
	}
}

// Write writes all of b, blocking until the socket takes it (the writer
// owning the socket: out.mu held or flushing).
func (s *qsock) Write(b []byte) (int, error) {
	if !s.raw {
		return s.nc.Write(b)
	}
	return rawsock.WriteAll(s.fd, b, &s.wdeadline, &s.wfds)
}

// WriteBuffers writes bufs with writev, like net.Buffers.WriteTo on the
// connection.
func (s *qsock) WriteBuffers(bufs *net.Buffers) (int64, error) {
	if !s.raw {
		return bufs.WriteTo(s.nc)
	}
	if len(*bufs) > len(s.iov) {
		return 0, fmt.Errorf("nvmetcp: %d buffers in one write (at most %d)", len(*bufs), len(s.iov))
	}
	b := [][]byte(*bufs)
	n, err := rawsock.WritevAll(s.fd, &b, s.iov[:], &s.wdeadline, &s.wfds)
	*bufs = b
	return n, err
}

// setWriteDeadline bounds the writes from now on (out.mu held).
func (s *qsock) setWriteDeadline(t time.Time) {
	if s.raw {
		s.wdeadline.Store(t.UnixNano())
		return
	}
	s.nc.SetWriteDeadline(t)
}

// shutdown stops reads and writes at once; the reader then tears the
// queue down. Any goroutine.
func (s *qsock) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return
	}
	s.down = true
	if s.raw {
		// Wakes a reader in poll(2) or io_uring (whose armed poll holds
		// the socket open, so close alone would not) and fails writers.
		_ = syscall.Shutdown(s.fd, syscall.SHUT_RDWR)
		return
	}
	s.nc.Close()
}

// close releases the socket; nothing may use it afterwards (the reader,
// when serve ends).
func (s *qsock) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed, s.down = true, true
	if s.raw {
		_ = syscall.Close(s.fd)
		s.fd = -1
		return
	}
	s.nc.Close()
}

// socketQueued reports whether bytes wait in the socket's receive queue, without
// reading them (reader only; false for connections that are not sockets).
func (q *queue) socketQueued() bool {
	s := &q.sock
	switch {
	case s.raw:
		n, err := unix.IoctlGetInt(s.fd, unix.SIOCINQ)
		return err == nil && n > 0
	case !s.socket:
		return false
	}
	if q.il.inqFn == nil {
		q.il.inqFn = q.il.inqCb
	}
	q.il.inq = 0
	if s.rc.Control(q.il.inqFn) != nil {
		return false
	}
	return q.il.inq > 0
}

// enterRaw takes the socket out of the runtime's netpoller (reader only).
// It does nothing while a writer owns the socket (the reader does not wait
// for a writer that may be blocked on the host: it tries again later),
// after shutdown, or when no descriptor is left.
func (q *queue) enterRaw() {
	s := &q.sock
	if !s.socket || !q.lockSwitch() {
		return
	}
	defer q.unlockSwitch()
	if s.raw || s.down {
		return
	}
	fd, err := rawsock.Dup(s.rc)
	if err != nil {
		return
	}
	if s.nc.Close() != nil {
		_ = syscall.Close(fd) // nobody else closes nc without mu: cannot happen
		return
	}
	s.rc, s.fd, s.raw = nil, fd, true
	q.rd.armedAt = time.Time{} // the deadline went with nc
}

// leaveRaw registers the socket with the runtime's netpoller again
// (reader only; locks as enterRaw and likewise does nothing while a writer
// owns the socket). After shutdown it stays raw: shutdown acted on the
// raw descriptor, and close closes it. On failure it stays raw.
func (q *queue) leaveRaw() {
	s := &q.sock
	if !s.raw || !q.lockSwitch() {
		return
	}
	defer q.unlockSwitch()
	if !s.raw || s.down {
		return
	}
	nc, rc, err := rawsock.FileConn(s.fd, "nvmetcp")
	if err != nil {
		q.t.log.Debug("nvmetcp: socket back to the netpoller", "err", err)
		return
	}
	_ = syscall.Close(s.fd)
	s.nc, s.rc, s.fd, s.raw = nc, rc, -1, false
	s.wdeadline.Store(0)
}

// lockSwitch takes out.mu and sock.mu for a mode switch when the writer
// is idle; otherwise it holds nothing and returns false (reader only).
func (q *queue) lockSwitch() bool {
	if !q.out.mu.TryLock() {
		return false
	}
	if !q.out.idle() {
		q.out.mu.Unlock()
		return false
	}
	q.sock.mu.Lock()
	return true
}

func (q *queue) unlockSwitch() {
	q.sock.mu.Unlock()
	q.out.mu.Unlock()
}
