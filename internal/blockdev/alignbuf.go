package blockdev

import (
	"sync"
	"unsafe"
)

const (
	// memAlign is the memory alignment used for direct I/O buffers. It is
	// the page size, which satisfies every device's DMA alignment.
	memAlign = 4096
	// bounceSize is the size of one bounce buffer; larger unaligned I/O is
	// split into pieces of this size.
	bounceSize = 256 << 10
)

// alignedBuf is a memAlign-aligned buffer of bounceSize bytes. It is handed
// around by pointer so sync.Pool.Put does not allocate.
type alignedBuf struct{ b []byte }

// bouncePool holds aligned buffers for copying unaligned caller memory.
var bouncePool = sync.Pool{New: func() any { return &alignedBuf{b: alignedAlloc(bounceSize)} }}

// alignedAlloc returns n bytes of Go memory starting at a memAlign boundary.
func alignedAlloc(n int) []byte {
	raw := make([]byte, n+memAlign)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&raw[0])) % memAlign); r != 0 {
		skip = memAlign - r
	}
	return raw[skip : skip+n : skip+n]
}

// AlignedBuffer returns n bytes aligned for direct I/O, so asynchronous
// I/O (Async) can use it without a bounce copy.
func AlignedBuffer(n int) []byte { return alignedAlloc(n) }

// isAligned reports whether p starts on a memAlign boundary (empty slices
// count as aligned).
func isAligned(p []byte) bool {
	return len(p) == 0 || uintptr(unsafe.Pointer(&p[0]))%memAlign == 0
}

// zeroBuf is a shared, never-written aligned buffer of zeros used as the
// source when a device has to write zeros itself.
var zeroBuf = sync.OnceValue(func() []byte { return alignedAlloc(bounceSize) })
