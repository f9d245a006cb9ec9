package fault_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// nbdConn is a small synchronous NBD client for these tests: fixed
// newstyle handshake with NBD_OPT_GO, simple replies, one request in flight
// per connection (use several connections for concurrency). Protocol:
// https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md
type nbdConn struct {
	c      net.Conn
	br     *bufio.Reader
	size   int64
	flags  uint16
	cookie uint64
	opTime time.Duration // deadline of one request/reply round trip
	hdr    [28]byte
	rep    [16]byte
}

const (
	nbdMagicInit     = 0x4e42444d41474943 // "NBDMAGIC"
	nbdMagicOpt      = 0x49484156454f5054 // "IHAVEOPT"
	nbdMagicOptReply = 0x0003e889045565a9
	nbdMagicRequest  = 0x25609513
	nbdMagicSimple   = 0x67446698

	nbdFlagFixedNewstyle = 1 << 0
	nbdFlagNoZeroes      = 1 << 1

	nbdOptGo      = 7
	nbdRepAck     = 1
	nbdRepInfo    = 3
	nbdRepErrBit  = 1 << 31
	nbdInfoExport = 0
	nbdTFlagFlush = 1 << 2
	nbdCmdRead    = 0
	nbdCmdWrite   = 1
	nbdCmdDisc    = 2
	nbdCmdFlush   = 3
)

// dialNBD connects to export name at addr.
func dialNBD(addr, name string, opTime time.Duration) (*nbdConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	n := &nbdConn{c: c, br: bufio.NewReaderSize(c, 256<<10), opTime: opTime}
	if err := n.handshake(name); err != nil {
		c.Close()
		return nil, fmt.Errorf("nbd %s/%s: %w", addr, name, err)
	}
	return n, nil
}

func (n *nbdConn) handshake(name string) error {
	_ = n.c.SetDeadline(time.Now().Add(10 * time.Second))
	defer n.c.SetDeadline(time.Time{})
	var g [18]byte
	if _, err := io.ReadFull(n.br, g[:]); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if binary.BigEndian.Uint64(g[0:]) != nbdMagicInit || binary.BigEndian.Uint64(g[8:]) != nbdMagicOpt {
		return fmt.Errorf("not a fixed-newstyle server: %x", g)
	}
	srvFlags := binary.BigEndian.Uint16(g[16:])
	if srvFlags&nbdFlagFixedNewstyle == 0 {
		return fmt.Errorf("server lacks fixed newstyle (flags %#x)", srvFlags)
	}
	cliFlags := uint32(nbdFlagFixedNewstyle)
	if srvFlags&nbdFlagNoZeroes != 0 {
		cliFlags |= nbdFlagNoZeroes
	}
	msg := binary.BigEndian.AppendUint32(nil, cliFlags)
	msg = binary.BigEndian.AppendUint64(msg, nbdMagicOpt)
	msg = binary.BigEndian.AppendUint32(msg, nbdOptGo)
	msg = binary.BigEndian.AppendUint32(msg, uint32(4+len(name)+2))
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(name)))
	msg = append(msg, name...)
	msg = binary.BigEndian.AppendUint16(msg, 0) // no specific info requests
	if _, err := n.c.Write(msg); err != nil {
		return err
	}
	gotExport := false
	for {
		var h [20]byte
		if _, err := io.ReadFull(n.br, h[:]); err != nil {
			return fmt.Errorf("option reply: %w", err)
		}
		if m := binary.BigEndian.Uint64(h[0:]); m != nbdMagicOptReply {
			return fmt.Errorf("bad option reply magic %#x", m)
		}
		typ := binary.BigEndian.Uint32(h[12:])
		data := make([]byte, binary.BigEndian.Uint32(h[16:]))
		if _, err := io.ReadFull(n.br, data); err != nil {
			return fmt.Errorf("option reply data: %w", err)
		}
		switch {
		case typ&nbdRepErrBit != 0:
			return fmt.Errorf("NBD_OPT_GO refused (reply type %#x): %q", typ, data)
		case typ == nbdRepInfo && len(data) >= 12 && binary.BigEndian.Uint16(data) == nbdInfoExport:
			n.size = int64(binary.BigEndian.Uint64(data[2:]))
			n.flags = binary.BigEndian.Uint16(data[10:])
			gotExport = true
		case typ == nbdRepAck:
			if !gotExport {
				return fmt.Errorf("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT")
			}
			return nil
		}
	}
}

// do sends one request and reads its simple reply (into rd for reads).
func (n *nbdConn) do(cmd uint16, off int64, length int, wr, rd []byte) error {
	n.cookie++
	h := n.hdr[:]
	binary.BigEndian.PutUint32(h[0:], nbdMagicRequest)
	binary.BigEndian.PutUint16(h[4:], 0)
	binary.BigEndian.PutUint16(h[6:], cmd)
	binary.BigEndian.PutUint64(h[8:], n.cookie)
	binary.BigEndian.PutUint64(h[16:], uint64(off))
	binary.BigEndian.PutUint32(h[24:], uint32(length))
	_ = n.c.SetDeadline(time.Now().Add(n.opTime))
	bufs := net.Buffers{h}
	if wr != nil {
		bufs = append(bufs, wr)
	}
	if _, err := bufs.WriteTo(n.c); err != nil {
		return err
	}
	r := n.rep[:]
	if _, err := io.ReadFull(n.br, r); err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	if m := binary.BigEndian.Uint32(r[0:]); m != nbdMagicSimple {
		return fmt.Errorf("bad reply magic %#x", m)
	}
	if c := binary.BigEndian.Uint64(r[8:]); c != n.cookie {
		return fmt.Errorf("reply cookie %d, want %d", c, n.cookie)
	}
	if e := binary.BigEndian.Uint32(r[4:]); e != 0 {
		return fmt.Errorf("server error %d (%s)", e, errnoName(e))
	}
	if rd != nil {
		if _, err := io.ReadFull(n.br, rd); err != nil {
			return fmt.Errorf("read data: %w", err)
		}
	}
	return nil
}

func errnoName(e uint32) string {
	switch e {
	case 1:
		return "EPERM"
	case 5:
		return "EIO"
	case 12:
		return "ENOMEM"
	case 22:
		return "EINVAL"
	case 28:
		return "ENOSPC"
	case 75:
		return "EOVERFLOW"
	case 95:
		return "ENOTSUP"
	case 108:
		return "ESHUTDOWN"
	}
	return "?"
}

func (n *nbdConn) WriteAt(p []byte, off int64) error {
	return n.do(nbdCmdWrite, off, len(p), p, nil)
}

func (n *nbdConn) ReadAt(p []byte, off int64) error {
	return n.do(nbdCmdRead, off, len(p), nil, p)
}

func (n *nbdConn) Flush() error {
	if n.flags&nbdTFlagFlush == 0 {
		return fmt.Errorf("export does not advertise NBD_FLAG_SEND_FLUSH")
	}
	return n.do(nbdCmdFlush, 0, 0, nil, nil)
}

// Close sends NBD_CMD_DISC and closes the connection.
func (n *nbdConn) Close() error {
	n.cookie++
	h := n.hdr[:]
	binary.BigEndian.PutUint32(h[0:], nbdMagicRequest)
	binary.BigEndian.PutUint32(h[4:], nbdCmdDisc)
	binary.BigEndian.PutUint64(h[8:], n.cookie)
	clear(h[16:])
	_ = n.c.SetDeadline(time.Now().Add(time.Second))
	_, _ = n.c.Write(h)
	return n.c.Close()
}
