// Package rawsock holds the descriptor-level socket operations of the
// servers' raw modes (NBD, NVMe/TCP): a connection's reader takes its
// socket out of the Go runtime's netpoller by duplicating the descriptor
// and closing the net.Conn (the runtime deletes the descriptor from its
// epoll before close(2); the duplicate keeps the connection open and
// shares its O_NONBLOCK status), waits for it in poll(2) or io_uring, and
// later hands it back to the netpoller (FileConn).
//
// Reads and writes go through package syscall, not x/sys/unix: syscall's
// wrappers carry the race detector's happens-before edge between a socket
// write and the read that returns its bytes.
package rawsock

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WriteWaitMs bounds one poll(2) of a writer waiting for socket space, so
// that a deadline set while it waits takes effect.
const WriteWaitMs = 100

// Dup returns a close-on-exec duplicate of rc's descriptor.
func Dup(rc syscall.RawConn) (int, error) {
	fd := -1
	var derr error
	if err := rc.Control(func(sysfd uintptr) {
		fd, derr = unix.FcntlInt(sysfd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		if fd >= 0 {
			_ = syscall.Close(fd)
		}
		return -1, fmt.Errorf("rawsock: dup: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("rawsock: dup: %w", derr)
	}
	return fd, nil
}

// FileConn returns a net.Conn registered with the netpoller, and its
// RawConn, for a duplicate of the socket fd; fd itself stays open.
func FileConn(fd int, name string) (net.Conn, syscall.RawConn, error) {
	// os.NewFile owns what it is given (Close, or a finalizer, closes
	// it): give it a duplicate. net.FileConn duplicates again and
	// registers that one.
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("rawsock: dup: %w", err)
	}
	f := os.NewFile(uintptr(d), name)
	nc, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("rawsock: %w", err)
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		nc.Close()
		return nil, nil, fmt.Errorf("rawsock: %T has no raw connection", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("rawsock: %w", err)
	}
	return nc, rc, nil
}

// WriteSome writes what fd takes of b now, without waiting, and returns
// how much that was.
func WriteSome(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := syscall.Write(fd, b[n:])
		if m > 0 {
			n += m
		}
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			return n, nil
		case err != nil:
			return n, err
		case m <= 0:
			return n, io.ErrShortWrite
		}
	}
	return n, nil
}

// RetryWrite handles the error of a write on a non-blocking fd: nil after
// EINTR, or after EAGAIN once the socket may take more (or WriteWaitMs
// passed); os.ErrDeadlineExceeded past *deadline (UnixNano, 0 or a nil
// deadline = none; read at every wait, so a deadline set while a writer
// waits applies); otherwise err. pfd is the caller's poll scratch.
func RetryWrite(fd int, err error, deadline *atomic.Int64, pfd *[1]unix.PollFd) error {
	switch err {
	case syscall.EINTR:
		return nil
	case syscall.EAGAIN:
	default:
		return err
	}
	ms := WriteWaitMs
	var dl int64
	if deadline != nil {
		dl = deadline.Load()
	}
	if dl != 0 {
		left := dl - time.Now().UnixNano()
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		ms = min(ms, int((left+int64(time.Millisecond)-1)/int64(time.Millisecond)))
	}
	pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT}
	if _, err := unix.Poll(pfd[:], ms); err != nil && err != syscall.EINTR {
		return err
	}
	return nil // writable, hung up, or the slice passed: the next write tells
}

// WriteAll writes all of b to the non-blocking fd, waiting for socket
// space (RetryWrite).
func WriteAll(fd int, b []byte, deadline *atomic.Int64, pfd *[1]unix.PollFd) (int, error) {
	n := 0
	for n < len(b) {
		m, err := syscall.Write(fd, b[n:])
		if m > 0 {
			n += m
		}
		if err != nil {
			if err = RetryWrite(fd, err, deadline, pfd); err != nil {
				return n, err
			}
		} else if m <= 0 {
			return n, io.ErrShortWrite
		}
	}
	return n, nil
}

// WaitReadable waits in poll(2) up to ms (-1: no limit) for fd to become
// readable or hung up; false when the time passed first.
func WaitReadable(fd int, ms int, pfd *[1]unix.PollFd) (bool, error) {
	for {
		pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		m, err := unix.Poll(pfd[:], ms)
		switch {
		case err == syscall.EINTR:
			continue // may stretch the wait; harmless
		case err != nil:
			return false, fmt.Errorf("rawsock: poll: %w", err)
		}
		return m > 0, nil
	}
}

// Read reads into b from the non-blocking fd, retrying after EINTR. again
// reports that nothing was there (EAGAIN): the caller waits as it sees
// fit and calls again. The end of the stream is io.EOF.
func Read(fd int, b []byte) (n int, again bool, err error) {
	for {
		n, err := syscall.Read(fd, b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, true, nil
		case err != nil:
			return 0, false, err
		case n == 0 && len(b) > 0:
			return 0, false, io.EOF
		}
		return n, false, nil
	}
}

// WritevAll writes every buffer of bufs to the non-blocking fd with
// writev(2), waiting for socket space like WriteAll. iov is the caller's
// scratch, at least as long as bufs. It consumes bufs as they are written.
func WritevAll(fd int, bufs *[][]byte, iov []syscall.Iovec, deadline *atomic.Int64, pfd *[1]unix.PollFd) (int64, error) {
	var total int64
	defer clear(iov)
	for {
		n := 0
		for _, b := range *bufs {
			if len(b) > 0 {
				iov[n].Base = &b[0]
				iov[n].SetLen(len(b))
				n++
			}
		}
		if n == 0 {
			*bufs = (*bufs)[len(*bufs):]
			return total, nil
		}
		r, _, e := syscall.Syscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
		if e != 0 {
			if err := RetryWrite(fd, e, deadline, pfd); err != nil {
				return total, err
			}
			continue
		}
		if r == 0 {
			return total, io.ErrShortWrite
		}
		total += int64(r)
		left := int(r)
		for len(*bufs) > 0 && left >= len((*bufs)[0]) {
			left -= len((*bufs)[0])
			*bufs = (*bufs)[1:]
		}
		if left > 0 {
			(*bufs)[0] = (*bufs)[0][left:]
		}
	}
}
