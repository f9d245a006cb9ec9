package nvmetcp

import (
	"io"
	"net"
	"sync"
)

// batchWriter is a flush-combining socket writer. PDUs are appended under
// mu; Flush (called with mu held) writes the buffer out with mu released,
// while other goroutines keep appending to a second buffer. A goroutine that
// flushes while another flush is in progress leaves its bytes to that
// flusher, which loops until the buffer is empty. Under load many PDUs leave
// in one write syscall; alone, a PDU leaves at once.
//
// pending is the unsent tail of a direct write (direct.go): bytes already
// committed to the stream, so every write sends them before anything else.
// Only the direct path sets it, under mu while nothing is buffered or being
// written; a flusher takes it under mu and writes it with mu released.
type batchWriter struct {
	mu       sync.Mutex // guards everything below, and the Encoder using it
	w        io.Writer
	buf      []byte
	spare    []byte
	pending  []byte
	flushing bool
	err      error
	vec      [4][]byte       // writev scratch, used by the flusher only
	trailer  [digestLen]byte // WriteData's trailer while its writev runs
}

// buffersWriter is a connection that writes net.Buffers with one writev
// (qsock).
type buffersWriter interface {
	WriteBuffers(*net.Buffers) (int64, error)
}

// maxKeptBuffer bounds the memory a queue keeps between bursts;
// largeData payloads bypass the buffer (see WriteData).
const (
	maxKeptBuffer = 1 << 20
	largeData     = 32 << 10
)

func newBatchWriter(w io.Writer) *batchWriter {
	return &batchWriter{w: w, buf: make([]byte, 0, 64<<10), spare: make([]byte, 0, 64<<10)}
}

// Write appends p. Caller holds mu.
func (b *batchWriter) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Flush writes out buffered bytes. Caller holds mu; it is released during
// the write syscall and held again on return.
func (b *batchWriter) Flush() error {
	if b.flushing {
		return b.err
	}
	b.flushing = true
	for (len(b.buf) > 0 || len(b.pending) > 0) && b.err == nil {
		out, pend := b.buf, b.pending
		b.buf = b.spare[:0]
		b.mu.Unlock()
		raceSync()
		var err error
		if len(pend) > 0 {
			_, err = b.w.Write(pend)
		}
		if err == nil && len(out) > 0 {
			_, err = b.w.Write(out)
		}
		b.mu.Lock()
		b.pending = nil
		if cap(out) > maxKeptBuffer {
			out = make([]byte, 0, 64<<10)
		}
		b.spare = out[:0]
		if err != nil {
			b.err = err
		}
	}
	b.flushing = false
	return b.err
}

// Buffered returns the number of bytes not yet written, not counting a
// pending tail. Caller holds mu.
func (b *batchWriter) Buffered() int { return len(b.buf) }

// idle reports whether nothing is buffered, pending or being written and
// no write has failed: the next byte written would be the next on the
// wire. Caller holds mu.
func (b *batchWriter) idle() bool {
	return len(b.buf) == 0 && len(b.pending) == 0 && !b.flushing && b.err == nil
}

// swapBuf replaces the buffer PDUs are appended to and returns the old
// one. The direct path encodes into its own buffer this way. Caller holds
// mu.
func (b *batchWriter) swapBuf(p []byte) []byte {
	old := b.buf
	b.buf = p
	return old
}

// WriteData appends a PDU's data segment and trailer (data digest). Large
// payloads are not copied: when no flush is in progress, the buffered bytes
// (the PDU header, possibly preceded by others' PDUs), the payload and the
// trailer leave in one writev, with mu released. p must stay valid until
// WriteData returns. Caller holds mu and calls Flush afterwards as usual.
func (b *batchWriter) WriteData(p, trailer []byte) error {
	if b.err != nil {
		return b.err
	}
	if len(p) < largeData || b.flushing {
		b.buf = append(b.buf, p...)
		b.buf = append(b.buf, trailer...)
		return nil
	}
	b.flushing = true
	out := b.buf
	b.buf = b.spare[:0]
	bufs := net.Buffers(b.vec[:0])
	if len(b.pending) > 0 { // the tail of a direct write comes first
		bufs = append(bufs, b.pending)
	}
	// The caller's trailer is its Encoder's scratch, which the next PDU
	// (appended while mu is released) overwrites: send a copy.
	tr := b.trailer[:copy(b.trailer[:], trailer)]
	bufs = append(bufs, out, p, tr)
	b.mu.Unlock()
	raceSync()
	var err error
	if bw, ok := b.w.(buffersWriter); ok {
		_, err = bw.WriteBuffers(&bufs)
	} else {
		_, err = bufs.WriteTo(b.w)
	}
	b.mu.Lock()
	b.vec = [4][]byte{}
	b.pending = nil
	b.spare = out[:0]
	if err != nil {
		b.err = err
	}
	b.flushing = false
	return b.err
}
