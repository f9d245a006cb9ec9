package nbd

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kura-io/kura/internal/rawsock"
)

const (
	// rawIdleMs: a raw-mode reader that has waited this long in poll(2)
	// without a request puts the socket back into the netpoller and parks
	// there, so an idle connection does not keep a thread blocked.
	rawIdleMs = 50
	// rawLeaveReads: the reader leaves raw mode after this many
	// consecutive socket reads for which pollFirst said no (deeper queue,
	// slow device, requests in flight), so one odd read does not cost two
	// mode switches.
	rawLeaveReads = 4
)

// sock is the connection's socket, in one of two modes.
//
// Netpoll mode: nc, the net.Conn, registered with the Go runtime's epoll.
// Raw mode: fd, a duplicate of the socket, and nc closed. Closing nc makes
// the runtime delete the descriptor from its epoll (internal/poll
// FD.destroy → runtime netpollclose → EPOLL_CTL_DEL) before close(2); the
// duplicate keeps the connection open and shares its O_NONBLOCK file
// status. A request arriving on a raw socket wakes only
// the reader waiting for it in poll(2); on a registered one it also wakes
// a runtime thread sleeping in epoll_wait whenever any other goroutine of
// the process (the listener's Accept, gRPC, NVMe/TCP) waits in the
// netpoller: ≈ 2 context switches per request at queue depth 1.
//
// The reader switches modes (enterRaw, leaveRaw); everything else only
// uses the current one. In raw mode reads wait in poll(2) and writes loop
// on write(2) and poll(2); system calls go through package syscall, not
// x/sys/unix, for read and write, because syscall's wrappers carry the
// race detector's happens-before edge between a socket write and the read
// that returns its bytes.
//
// Raw-mode descriptors are never closed while another thread may use
// them (the number could be reused): shutdown and abort use shutdown(2),
// which wakes the reader in poll(2) and fails writers; the descriptor is
// closed by close, when serve ends, or by leaveRaw under both locks.
type sock struct {
	// mu serialises mode switches with shutdown, abort and close, which
	// run on other goroutines and cannot take conn.wmu (a writer blocked
	// on a full socket may hold it). It guards nc, rc, fd, raw and closed:
	// the reader changes them holding conn.wmu and mu, writers read them
	// holding conn.wmu, and the reader reads them without a lock (it is
	// the only goroutine that changes them). Never held across blocking
	// I/O.
	mu     sync.Mutex
	nc     net.Conn        // netpoll mode; nil in raw mode
	rc     syscall.RawConn // nc's, in netpoll mode when socket
	fd     int             // raw mode: the duplicated descriptor, else -1
	raw    bool
	closed bool // close ran: nothing may touch the socket any more

	// socket: nc is a socket with a RawConn (fixed at init). Other
	// connections (net.Pipe in tests) never enter raw mode and have no
	// direct (non-blocking) write path.
	socket bool

	// wdeadline is when raw-mode writes start failing (UnixNano, 0 =
	// none); shutdown sets it, like SetWriteDeadline in netpoll mode.
	wdeadline atomic.Int64

	rfds [1]unix.PollFd // the reader's poll set (reader only)

	// Writer scratch, all under conn.wmu.
	wfds  [1]unix.PollFd   // raw writers' poll set
	iovec [2]syscall.Iovec // raw writev
	iov   [2][]byte        // netpoll writev
	bufs  net.Buffers      // netpoll writev cursor over iov
	// writeNow's RawConn callback and its arguments and results.
	wb      []byte
	wn      int
	wErr    error
	writeFn func(fd uintptr) bool

	// queued's RawConn callback and its result (reader only).
	inq   int
	inqFn func(fd uintptr)
}

func (s *sock) init(nc net.Conn) {
	s.nc, s.fd = nc, -1
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc, s.socket = rc, true
		}
	}
	s.writeFn = s.writeCb
	s.inqFn = s.inqCb
}

// queued reports whether bytes wait in the socket's receive queue, without
// reading them (reader only; false for connections that are not sockets).
func (s *sock) queued() bool {
	switch {
	case s.raw:
		n, err := unix.IoctlGetInt(s.fd, unix.SIOCINQ)
		return err == nil && n > 0
	case s.socket:
		s.inq = 0
		if s.rc.Control(s.inqFn) != nil {
			return false
		}
		return s.inq > 0
	}
	return false
}

func (s *sock) inqCb(fd uintptr) {
	if n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
		s.inq = n
	}
}

// readRaw reads into b in raw mode (reader only). With wait set it first
// waits in poll(2) for up to idleMs; idle reports that nothing arrived in
// that time.
func (s *sock) readRaw(b []byte, wait bool, idleMs int) (n int, idle bool, err error) {
	if len(b) == 0 {
		return 0, false, nil
	}
	for {
		if wait {
			wait = false
			ready, err := rawsock.WaitReadable(s.fd, idleMs, &s.rfds)
			if err != nil {
				return 0, false, err
			}
			if !ready {
				return 0, true, nil
			}
		}
		n, again, err := rawsock.Read(s.fd, b)
		if !again {
			return n, false, err
		}
		wait = true
	}
}

// Write writes all of b, blocking until the socket takes it (conn.wmu
// held).
func (s *sock) Write(b []byte) (int, error) {
	if !s.raw {
		return s.nc.Write(b)
	}
	return rawsock.WriteAll(s.fd, b, &s.wdeadline, &s.wfds)
}

// writev writes hdr and data with one writev(2) where the socket takes
// them at once, without copying data (conn.wmu held).
func (s *sock) writev(hdr, data []byte) error {
	if !s.raw {
		s.iov[0], s.iov[1] = hdr, data
		s.bufs = s.iov[:]
		_, err := s.bufs.WriteTo(s.nc)
		s.iov[0], s.iov[1] = nil, nil
		return err
	}
	dl := &s.wdeadline
	if raceEnabled {
		// syscall.Write publishes the race detector's edge (see above);
		// a raw writev cannot.
		if _, err := rawsock.WriteAll(s.fd, hdr, dl, &s.wfds); err != nil {
			return err
		}
		_, err := rawsock.WriteAll(s.fd, data, dl, &s.wfds)
		return err
	}
	s.iov[0], s.iov[1] = hdr, data
	bufs := s.iov[:]
	_, err := rawsock.WritevAll(s.fd, &bufs, s.iovec[:], dl, &s.wfds)
	s.iov[0], s.iov[1] = nil, nil
	return err
}

// writeNow writes what the socket takes of b now, without blocking, and
// returns how much that was (conn.wmu held; socket only).
func (s *sock) writeNow(b []byte) (int, error) {
	if s.raw {
		return rawsock.WriteSome(s.fd, b)
	}
	s.wb, s.wn, s.wErr = b, 0, nil
	err := s.rc.Write(s.writeFn)
	s.wb = nil
	if err == nil {
		err = s.wErr
	}
	return s.wn, err
}

// writeCb is writeNow's RawConn callback: it never asks to wait.
func (s *sock) writeCb(fd uintptr) bool {
	s.wn, s.wErr = rawsock.WriteSome(int(fd), s.wb)
	return true
}

// shutdownRead stops reads at once (a reader waiting wakes with EOF) and
// lets writes go on until deadline. Any goroutine.
func (s *sock) shutdownRead(deadline time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
	case s.raw:
		s.wdeadline.Store(deadline.UnixNano())
		// Even on a socket the peer already closed (ENOTCONN), Linux
		// marks it shut down and wakes its waiters.
		_ = syscall.Shutdown(s.fd, syscall.SHUT_RD)
	default:
		_ = s.nc.SetWriteDeadline(deadline)
		if cr, ok := s.nc.(interface{ CloseRead() error }); ok && cr.CloseRead() == nil {
			return
		}
		_ = s.nc.Close()
	}
}

// abort stops reads and writes at once. Any goroutine.
func (s *sock) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
	case s.raw:
		_ = syscall.Shutdown(s.fd, syscall.SHUT_RDWR)
	default:
		_ = s.nc.Close()
	}
}

// close closes the socket; nothing may use it afterwards (the reader,
// when serve ends). It reports whether the socket was in raw mode.
func (s *sock) close() (wasRaw bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closed = true
	if s.raw {
		_ = syscall.Close(s.fd)
		s.fd = -1
		return true
	}
	_ = s.nc.Close()
	return false
}

// enterRaw takes the socket out of the runtime's netpoller (reader only,
// in transmission, socket only). It holds wmu, so no writer and no direct
// write runs meanwhile, and sock.mu against shutdown and abort. It does
// nothing when a writer holds wmu (the reader does not wait for a writer
// that may be blocked on the client: it tries again on a later read), once
// the connection is closing, or when no descriptor is left.
func (c *conn) enterRaw() {
	s := &c.sock
	if !c.wmu.TryLock() {
		return
	}
	s.mu.Lock()
	if !s.raw && !s.closed && !c.closing.Load() {
		fd, err := rawsock.Dup(s.rc)
		switch {
		case err != nil:
		case s.nc.Close() != nil:
			// Cannot happen (nobody else closes nc without mu); keep the
			// socket as it was.
			_ = syscall.Close(fd)
		default:
			s.nc, s.rc, s.fd, s.raw = nil, nil, fd, true
			c.srv.rawEnters.Add(1)
			c.srv.rawConns.Add(1)
		}
	}
	s.mu.Unlock()
	c.wmu.Unlock()
}

// leaveRaw registers the socket with the runtime's netpoller again
// (reader only; locks as enterRaw, and likewise does nothing while a
// writer holds wmu). Once the connection is closing it stays raw: shutdown
// and abort have acted on the raw descriptor, and close closes it. On
// failure it stays raw.
func (c *conn) leaveRaw() {
	s := &c.sock
	if !c.wmu.TryLock() {
		return
	}
	s.mu.Lock()
	if s.raw && !s.closed && !c.closing.Load() {
		if nc, rc, err := rawsock.FileConn(s.fd, "nbd"); err == nil {
			_ = syscall.Close(s.fd)
			s.nc, s.rc, s.fd, s.raw = nc, rc, -1, false
			c.srv.rawConns.Add(-1)
		}
	}
	s.mu.Unlock()
	c.wmu.Unlock()
}
