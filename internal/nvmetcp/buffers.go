package nvmetcp

import (
	"math/bits"
	"sync"
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
	p := &pbuf{b: make([]byte, 1<<(c+minBufShift)), class: c}
	p.b = p.b[:n]
	return p
}

func putBuf(p *pbuf) {
	if p != nil {
		bufPools[p.class].Put(p)
	}
}
