package rawsock

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawPair returns a raw (out of the netpoller) descriptor for one end of a
// loopback TCP connection, and the other end.
func rawPair(t *testing.T) (int, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := Dup(rc)
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // the duplicate keeps the connection open
	t.Cleanup(func() { syscall.Close(fd) })
	return fd, peer
}

// TestReadWrite: data crosses a raw descriptor both ways; an empty socket
// says again, a closed peer io.EOF; a write past its deadline fails with
// os.ErrDeadlineExceeded.
func TestReadWrite(t *testing.T) {
	fd, peer := rawPair(t)
	var pfd [1]unix.PollFd
	b := make([]byte, 16)
	if _, again, err := Read(fd, b); !again || err != nil {
		t.Fatalf("empty socket: again %v, err %v", again, err)
	}
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if ok, err := WaitReadable(fd, 5000, &pfd); !ok || err != nil {
		t.Fatalf("WaitReadable: %v %v", ok, err)
	}
	if n, again, err := Read(fd, b); n != 5 || again || err != nil || string(b[:5]) != "hello" {
		t.Fatalf("Read: %d %q %v %v", n, b[:n], again, err)
	}
	if n, err := WriteAll(fd, []byte("back"), nil, &pfd); n != 4 || err != nil {
		t.Fatalf("WriteAll: %d %v", n, err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(peer, b[:4]); err != nil || string(b[:4]) != "back" {
		t.Fatalf("peer read %q: %v", b[:4], err)
	}
	// The peer does not read: the socket fills and the deadline applies.
	big := make([]byte, 64<<20)
	if n, err := WriteSome(fd, big); err != nil || n == 0 || n == len(big) {
		t.Fatalf("WriteSome on a filling socket: %d %v", n, err)
	}
	// The deadline is set while the writer already waits (as a shutdown
	// sets it): it applies.
	var dl atomic.Int64
	start := time.Now()
	time.AfterFunc(150*time.Millisecond, func() { dl.Store(time.Now().UnixNano()) })
	if _, err := WriteAll(fd, big, &dl, &pfd); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteAll past its deadline: %v", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
		t.Fatalf("deadline set after 150 ms took effect after %v", d)
	}
	peer.Close()
	if ok, err := WaitReadable(fd, 5000, &pfd); !ok || err != nil {
		t.Fatalf("WaitReadable after the peer closed: %v %v", ok, err)
	}
	// The peer closed with our bytes unread: a reset, not an orderly end.
	if _, again, err := Read(fd, b); again || !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("Read after the peer closed: again %v, err %v", again, err)
	}
}

// TestFileConn: a raw descriptor goes back into the netpoller as a
// working net.Conn and stays open itself.
func TestFileConn(t *testing.T) {
	fd, peer := rawPair(t)
	nc, rc, err := FileConn(fd, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if rc == nil {
		t.Fatal("no RawConn")
	}
	if _, err := peer.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, b); err != nil || string(b) != "ping" {
		t.Fatalf("read %q: %v", b, err)
	}
	var pfd [1]unix.PollFd
	if _, err := WriteAll(fd, []byte("x"), nil, &pfd); err != nil {
		t.Fatalf("the raw descriptor was closed: %v", err)
	}
	var pfdr [1]unix.PollFd
	if ok, err := WaitReadable(fd, 10, &pfdr); ok || err != nil {
		t.Fatalf("WaitReadable with nothing sent: %v %v", ok, err)
	}
}

// TestWritevAll: buffers (some empty) arrive in order, also when the
// socket takes them in pieces because the peer reads slowly.
func TestWritevAll(t *testing.T) {
	fd, peer := rawPair(t)
	var pfd [1]unix.PollFd
	var iov [4]syscall.Iovec
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	bufs := [][]byte{[]byte("head"), nil, big, []byte("tail")}
	want := append(append([]byte("head"), big...), "tail"...)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(want))
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		for n := 0; n < len(b); {
			time.Sleep(time.Millisecond) // the socket fills meanwhile
			m, err := peer.Read(b[n:])
			if err != nil {
				break
			}
			n += m
		}
		got <- b
	}()
	n, err := WritevAll(fd, &bufs, iov[:], nil, &pfd)
	if err != nil || n != int64(len(want)) || len(bufs) != 0 {
		t.Fatalf("WritevAll: %d of %d, %v, %d buffers left", n, len(want), err, len(bufs))
	}
	if b := <-got; string(b) != string(want) {
		t.Fatal("peer read different bytes")
	}
	if iov[0].Base != nil {
		t.Fatal("iovec scratch still points at the buffers")
	}
}
