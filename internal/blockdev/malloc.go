package blockdev

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"unsafe"
)

// mallocChunk is the allocation granule of a malloc device: memory is only
// allocated for chunks that were written, so a large malloc device is cheap
// until used.
const mallocChunk = 1 << 20

// Malloc is a memory-backed device. Never-written blocks read as zeros.
type Malloc struct {
	name      string
	size      int64
	blockSize int

	mu     sync.RWMutex // guards chunks slice entries (not their contents) and closed
	chunks [][]byte
	closed bool

	// stripes guard chunk contents: chunk i's bytes are copied under
	// stripes[i%mallocStripes] (read-locked by readers). Overlapping
	// concurrent I/O is legal for a host (its result is undefined, as on
	// a disk); this keeps it from being a data race in the process.
	stripes [mallocStripes]paddedRWMutex
}

// mallocStripes is the number of locks chunk contents are striped over.
const mallocStripes = 64

// paddedRWMutex fills a cache line, so CPUs working on different stripes
// do not share one.
type paddedRWMutex struct {
	sync.RWMutex
	_ [64 - unsafe.Sizeof(sync.RWMutex{})%64]byte
}

func (m *Malloc) stripe(ci int64) *sync.RWMutex { return &m.stripes[ci%mallocStripes].RWMutex }

// NewMalloc creates a memory device of size bytes.
func NewMalloc(name string, size int64, blockSize int) (*Malloc, error) {
	if blockSize != 512 && blockSize != 4096 {
		return nil, fmt.Errorf("%w: malloc block size must be 512 or 4096, got %d", ErrInvalidURI, blockSize)
	}
	if size <= 0 || size%int64(blockSize) != 0 {
		return nil, fmt.Errorf("%w: malloc size %d must be a positive multiple of %d", ErrInvalidURI, size, blockSize)
	}
	return &Malloc{name: name, size: size, blockSize: blockSize,
		chunks: make([][]byte, (size+mallocChunk-1)/mallocChunk)}, nil
}

func openMalloc(_ context.Context, u *url.URL) (Device, error) {
	name := strings.Trim(u.Host+u.Path, "/")
	if name == "" {
		return nil, fmt.Errorf("%w %q: malloc needs a name (malloc:///NAME?size_mb=N)", ErrInvalidURI, u.Redacted())
	}
	p := NewParams(u)
	mb := p.Int("size_mb", 0, 1, 1<<22)
	bs := p.BlockSize(512)
	if _, ok := u.Query()["size_mb"]; !ok {
		return nil, fmt.Errorf("%w %q: malloc needs size_mb", ErrInvalidURI, u.Redacted())
	}
	if err := p.Done(); err != nil {
		return nil, err
	}
	return NewMalloc(name, mb<<20, bs)
}

// Size returns the device size in bytes.
func (m *Malloc) Size() int64 { return m.size }

// BlockSize returns the logical block size.
func (m *Malloc) BlockSize() int { return m.blockSize }

func (m *Malloc) check(off, length int64) error {
	if err := CheckRange(off, length, m.blockSize, m.size); err != nil {
		return err
	}
	m.mu.RLock()
	closed := m.closed
	m.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return nil
}

// chunk returns chunk i, allocating it when alloc is set. It returns nil
// when the device was closed concurrently.
func (m *Malloc) chunk(i int64, alloc bool) []byte {
	m.mu.RLock()
	var c []byte
	if !m.closed {
		c = m.chunks[i]
	}
	m.mu.RUnlock()
	if c != nil || !alloc {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	if m.chunks[i] == nil {
		n := int64(mallocChunk)
		if rem := m.size - i*mallocChunk; rem < n {
			n = rem
		}
		m.chunks[i] = make([]byte, n)
	}
	return m.chunks[i]
}

// each calls f for every chunk piece of [off, off+len).
func (m *Malloc) each(off int64, length int, f func(ci int64, co int64, lo, hi int)) {
	done := 0
	for done < length {
		pos := off + int64(done)
		ci, co := pos/mallocChunk, pos%mallocChunk
		n := int(mallocChunk - co)
		if n > length-done {
			n = length - done
		}
		f(ci, co, done, done+n)
		done += n
	}
}

// ReadAt copies len(p) bytes at off into p.
func (m *Malloc) ReadAt(p []byte, off int64) (int, error) {
	if err := m.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	m.each(off, len(p), func(ci, co int64, lo, hi int) {
		if c := m.chunk(ci, false); c != nil {
			l := m.stripe(ci)
			l.RLock()
			copy(p[lo:hi], c[co:])
			l.RUnlock()
		} else {
			clear(p[lo:hi])
		}
	})
	if m.isClosed() { // raced with Close: p may hold zeros instead of data
		return 0, ErrClosed
	}
	return len(p), nil
}

// WriteAt copies p to the device at off.
func (m *Malloc) WriteAt(p []byte, off int64) (int, error) {
	if err := m.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	closed := false
	m.each(off, len(p), func(ci, co int64, lo, hi int) {
		if c := m.chunk(ci, true); c != nil {
			l := m.stripe(ci)
			l.Lock()
			copy(c[co:], p[lo:hi])
			l.Unlock()
		} else {
			closed = true
		}
	})
	if closed {
		return 0, ErrClosed
	}
	return len(p), nil
}

func (m *Malloc) isClosed() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.closed
}

// Flush has nothing to do for memory; it fails only after Close.
func (m *Malloc) Flush() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	return nil
}

// Unmap zeroes the range (malloc unmap is zeroing) and frees whole chunks.
func (m *Malloc) Unmap(off, length int64) error { return m.WriteZeroes(off, length) }

// WriteZeroes zeroes the range, freeing whole chunks.
func (m *Malloc) WriteZeroes(off, length int64) error {
	if err := m.check(off, length); err != nil {
		return err
	}
	m.each(off, int(length), func(ci, co int64, lo, hi int) {
		if co == 0 && hi-lo == mallocChunk {
			m.mu.Lock()
			if !m.closed {
				m.chunks[ci] = nil
			}
			m.mu.Unlock()
			return
		}
		if c := m.chunk(ci, false); c != nil {
			l := m.stripe(ci)
			l.Lock()
			clear(c[co : co+int64(hi-lo)])
			l.Unlock()
		}
	})
	return nil
}

// Allocated reports whether any chunk overlapping the range was written.
func (m *Malloc) Allocated(off, length int64) (bool, error) {
	if err := m.check(off, length); err != nil {
		return false, err
	}
	any := false
	m.each(off, int(length), func(ci, _ int64, _, _ int) {
		if m.chunk(ci, false) != nil {
			any = true
		}
	})
	return any, nil
}

// Close frees the memory. Later calls fail with ErrClosed.
func (m *Malloc) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	m.chunks = nil
	return nil
}
