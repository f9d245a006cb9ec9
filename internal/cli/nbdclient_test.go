package cli

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// nbdClient is a minimal fixed-newstyle NBD client (NBD_OPT_EXPORT_NAME,
// simple replies, one request at a time) used to drive writes through an
// engine's NBD share. Protocol: github.com/NetworkBlockDevice/nbd doc/proto.md.
type nbdClient struct {
	c      net.Conn
	r      *bufio.Reader
	size   uint64
	handle uint64
	hdr    [28]byte
}

const (
	nbdMagic       = 0x4E42444D41474943 // "NBDMAGIC"
	nbdIHaveOpt    = 0x49484156454F5054 // "IHAVEOPT"
	nbdReqMagic    = 0x25609513
	nbdReplyMagic  = 0x67446698
	nbdOptExport   = 1
	nbdCmdRead     = 0
	nbdCmdWrite    = 1
	nbdCmdDisc     = 2
	nbdCmdFlush    = 3
	nbdFlagNoZeros = 1 << 1
)

func dialNBD(addr, export string) (*nbdClient, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	n := &nbdClient{c: c, r: bufio.NewReader(c)}
	if err := n.handshake(export); err != nil {
		c.Close()
		return nil, err
	}
	return n, nil
}

func (n *nbdClient) handshake(export string) error {
	_ = n.c.SetDeadline(time.Now().Add(10 * time.Second))
	defer n.c.SetDeadline(time.Time{})
	var b [18]byte
	if _, err := io.ReadFull(n.r, b[:18]); err != nil {
		return fmt.Errorf("nbd greeting: %w", err)
	}
	if binary.BigEndian.Uint64(b[0:]) != nbdMagic || binary.BigEndian.Uint64(b[8:]) != nbdIHaveOpt {
		return fmt.Errorf("nbd: bad greeting %x", b)
	}
	hflags := binary.BigEndian.Uint16(b[16:])
	cflags := uint32(1) // fixed newstyle
	if hflags&nbdFlagNoZeros != 0 {
		cflags |= nbdFlagNoZeros
	}
	msg := binary.BigEndian.AppendUint32(nil, cflags)
	msg = binary.BigEndian.AppendUint64(msg, nbdIHaveOpt)
	msg = binary.BigEndian.AppendUint32(msg, nbdOptExport)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(export)))
	msg = append(msg, export...)
	if _, err := n.c.Write(msg); err != nil {
		return err
	}
	var reply [10]byte
	if _, err := io.ReadFull(n.r, reply[:]); err != nil {
		return fmt.Errorf("nbd export %q: %w", export, err)
	}
	n.size = binary.BigEndian.Uint64(reply[:8])
	if cflags&nbdFlagNoZeros == 0 {
		if _, err := io.ReadFull(n.r, make([]byte, 124)); err != nil {
			return err
		}
	}
	return nil
}

func (n *nbdClient) request(cmd uint16, off uint64, length uint32, data []byte) error {
	n.handle++
	h := n.hdr[:]
	binary.BigEndian.PutUint32(h[0:], nbdReqMagic)
	binary.BigEndian.PutUint16(h[4:], 0)
	binary.BigEndian.PutUint16(h[6:], cmd)
	binary.BigEndian.PutUint64(h[8:], n.handle)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
	_ = n.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := n.c.Write(append(h, data...)); err != nil {
		return err
	}
	return nil
}

func (n *nbdClient) reply(into []byte) error {
	var r [16]byte
	if _, err := io.ReadFull(n.r, r[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(r[0:]) != nbdReplyMagic {
		return fmt.Errorf("nbd: bad reply magic %x", r[:4])
	}
	if e := binary.BigEndian.Uint32(r[4:]); e != 0 {
		return fmt.Errorf("nbd: error %d", e)
	}
	if h := binary.BigEndian.Uint64(r[8:]); h != n.handle {
		return fmt.Errorf("nbd: reply for handle %d, want %d", h, n.handle)
	}
	if into != nil {
		if _, err := io.ReadFull(n.r, into); err != nil {
			return err
		}
	}
	return nil
}

func (n *nbdClient) WriteAt(p []byte, off int64) error {
	if err := n.request(nbdCmdWrite, uint64(off), uint32(len(p)), p); err != nil {
		return err
	}
	return n.reply(nil)
}

func (n *nbdClient) ReadAt(p []byte, off int64) error {
	if err := n.request(nbdCmdRead, uint64(off), uint32(len(p)), nil); err != nil {
		return err
	}
	return n.reply(p)
}

func (n *nbdClient) Flush() error {
	if err := n.request(nbdCmdFlush, 0, 0, nil); err != nil {
		return err
	}
	return n.reply(nil)
}

func (n *nbdClient) Close() error {
	_ = n.request(nbdCmdDisc, 0, 0, nil)
	return n.c.Close()
}

// writeBatch sends every write of the batch in one socket write before
// reading any reply, so the server sees them pipelined, and checks that
// each got a successful reply (in any order).
func (n *nbdClient) writeBatch(offs []int64, bufs [][]byte) error {
	first := n.handle + 1
	var out []byte
	for i, off := range offs {
		n.handle++
		out = append(out, nbdWriteRequest(n.handle, off, bufs[i])...)
	}
	_ = n.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := n.c.Write(out); err != nil {
		return err
	}
	seen := map[uint64]bool{}
	for range offs {
		var r [16]byte
		if _, err := io.ReadFull(n.r, r[:]); err != nil {
			return err
		}
		h := binary.BigEndian.Uint64(r[8:])
		switch {
		case binary.BigEndian.Uint32(r[0:]) != nbdReplyMagic:
			return fmt.Errorf("nbd: bad reply magic %x", r[:4])
		case binary.BigEndian.Uint32(r[4:]) != 0:
			return fmt.Errorf("nbd: write %d failed: error %d", h, binary.BigEndian.Uint32(r[4:]))
		case h < first || h > n.handle || seen[h]:
			return fmt.Errorf("nbd: unexpected reply handle %d (batch %d–%d)", h, first, n.handle)
		}
		seen[h] = true
	}
	return nil
}

// nbdWriteRequest encodes an NBD_CMD_WRITE request with its data.
func nbdWriteRequest(handle uint64, off int64, data []byte) []byte {
	var h [28]byte
	binary.BigEndian.PutUint32(h[0:], nbdReqMagic)
	binary.BigEndian.PutUint16(h[6:], nbdCmdWrite)
	binary.BigEndian.PutUint64(h[8:], handle)
	binary.BigEndian.PutUint64(h[16:], uint64(off))
	binary.BigEndian.PutUint32(h[24:], uint32(len(data)))
	return append(h[:], data...)
}
