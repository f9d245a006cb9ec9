package nvmetcp

import (
	"math/bits"
	"sync"
	"unsafe"
)

// pbuf is a pooled data buffer. Pools are size-classed (4 KiB << i up to
// maxTransfer) so steady-state I/O allocates nothing.
type pbuf struct {
	b     []byte
	class int
}

const minBufShift = 12

var bufPools [maxTransferShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuf returns a buffer with len n (n ≤ maxTransfer).
func getBuf(n int) *pbuf {
	c := bufClass(n)
	if p, ok := bufPools[c].Get().(*pbuf); ok {
		p.b = p.b[:n]
		return p
	}
	p := &pbuf{b: alignedBytes(1 << (c + minBufShift)), class: c}
	p.b = p.b[:n]
	return p
}

// bufAlign is the alignment O_DIRECT devices need to use a buffer without
// a bounce copy (blockdev.Async devices refuse unaligned ones).
const bufAlign = 4096

// alignedBytes returns size bytes starting at a bufAlign boundary. Go
// already places power-of-two allocations of 4 KiB and more there; the
// padded allocation is a fallback.
func alignedBytes(size int) []byte {
	b := make([]byte, size)
	if uintptr(unsafe.Pointer(&b[0]))%bufAlign == 0 {
		return b
	}
	raw := make([]byte, size+bufAlign)
	off := bufAlign - int(uintptr(unsafe.Pointer(&raw[0]))%bufAlign)
	return raw[off : off+size : off+size]
}

func putBuf(p *pbuf) {
	if p != nil {
		bufPools[p.class].Put(p)
	}
}
