package nbd

import (
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// pollWaitMs bounds how long the reader waits for the next request in
	// poll(2) before parking in the netpoller.
	pollWaitMs = 1
	// perFillScale is the fixed-point scale of conn.perFill.
	perFillScale = 256
	// syncClientPerFill: while fewer than 1.25 requests arrive per socket
	// read on average, the client is waiting for each reply before it
	// sends the next request (queue depth 1).
	syncClientPerFill = perFillScale * 5 / 4
)

// pollReader is the connection's socket reader. For a client at queue
// depth 1 on a fast device (see conn.pollFirst) it waits for the next
// request in poll(2), on the thread and P the reader already holds, for up
// to pollWaitMs, and only then parks in the netpoller. Parking costs a
// scheduler round trip per request (on this kind of VM ≈ 15 µs for a
// read, 30 µs for a write at QD1); a short blocking poll costs a thread
// that holds its P while the connection has nothing else to do. With
// several requests per read (a deeper queue) the netpoller wins, because
// its wake-ups are shared by a batch and the P stays free for the others.
type pollReader struct {
	c   *conn
	nc  net.Conn
	rc  syscall.RawConn // nil when nc is not a socket
	fds [1]unix.PollFd

	// Arguments and results of readFn (reader goroutine only).
	buf    []byte
	n      int
	err    error
	polled bool
	readFn func(fd uintptr) bool
}

func newPollReader(c *conn, nc net.Conn) *pollReader {
	p := &pollReader{c: c, nc: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			p.rc = rc
		}
	}
	p.readFn = p.read
	return p
}

// Read fills b from the socket (bufio.Reader calls it on the reader
// goroutine only).
func (p *pollReader) Read(b []byte) (int, error) {
	if p.rc == nil || !p.c.pollFirst() {
		return p.nc.Read(b)
	}
	p.buf, p.n, p.err, p.polled = b, 0, nil, false
	err := p.rc.Read(p.readFn)
	p.buf = nil
	if err != nil {
		return 0, err
	}
	return p.n, p.err
}

// read is the RawConn callback: poll once, then read; returning false
// parks the goroutine in the netpoller until the socket is readable.
func (p *pollReader) read(fd uintptr) bool {
	if !p.polled {
		p.polled = true
		p.c.srv.pollWaits.Add(1)
		p.fds[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		_, _ = unix.Poll(p.fds[:], pollWaitMs) // timeout or EINTR: the read below tells
	}
	for {
		// syscall.Read, not unix.Read: it carries the race detector's
		// happens-before edge that the net package's writes release.
		n, err := syscall.Read(int(fd), p.buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			p.err = err
		case n == 0:
			p.err = io.EOF
		}
		p.n = n
		return true
	}
}

// pollFirst reports whether the next socket read should wait in poll(2)
// first (reader goroutine only): in transmission, nothing in flight, an
// inline device faster than fastDeviceNs, and about one request per read.
// It also folds the requests taken from the previous read into perFill.
func (c *conn) pollFirst() bool {
	c.perFill += (c.fillReqs*perFillScale - c.perFill) / 8
	c.fillReqs = 0
	return c.dev != nil && c.inflight.Load() == 0 && c.ewmaNs < fastDeviceNs && c.perFill < syncClientPerFill
}
