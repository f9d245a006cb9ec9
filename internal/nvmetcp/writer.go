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
type batchWriter struct {
	mu       sync.Mutex // guards everything below, and the Encoder using it
	w        io.Writer
	buf      []byte
	spare    []byte
	flushing bool
	err      error
	vec      [3][]byte // writev scratch, used by the flusher only
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
	for len(b.buf) > 0 && b.err == nil {
		out := b.buf
		b.buf = b.spare[:0]
		b.mu.Unlock()
		raceSync()
		_, err := b.w.Write(out)
		b.mu.Lock()
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

// Buffered returns the number of bytes not yet written. Caller holds mu.
func (b *batchWriter) Buffered() int { return len(b.buf) }

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
	b.vec = [3][]byte{out, p, trailer}
	bufs := net.Buffers(b.vec[:])
	b.mu.Unlock()
	raceSync()
	_, err := bufs.WriteTo(b.w)
	b.mu.Lock()
	b.vec = [3][]byte{}
	b.spare = out[:0]
	if err != nil {
		b.err = err
	}
	b.flushing = false
	return b.err
}
