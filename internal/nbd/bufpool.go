package nbd

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Payload buffers come from power-of-two size classes, 4 KiB .. maxPayload,
// each a sync.Pool of *[]byte (pointers, so Put does not allocate). Buffers
// are 4 KiB aligned so O_DIRECT devices can use them without a bounce copy.
const (
	bufMinShift   = 12
	bufAlign      = 4096
	bufClasses    = 14 // 4 KiB << 13 == 32 MiB == maxPayload
	keepBufMaxLen = 256 << 10
)

var bufPools [bufClasses]sync.Pool

// bufClass returns the size class holding n bytes (n ≤ maxPayload).
func bufClass(n int) int {
	if n <= 1<<bufMinShift {
		return 0
	}
	return bits.Len(uint(n-1) >> bufMinShift)
}

// getBuf returns a pooled buffer of capacity ≥ n (n ≤ maxPayload).
func getBuf(n int) *[]byte {
	c := bufClass(n)
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return p
	}
	size := 1 << (bufMinShift + c)
	raw := make([]byte, size+bufAlign)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&raw[0])) & (bufAlign - 1)); r != 0 {
		off = bufAlign - r
	}
	b := raw[off : off+size : off+size]
	return &b
}

// putBuf returns a buffer obtained from getBuf.
func putBuf(p *[]byte) {
	bufPools[bufClass(cap(*p))].Put(p)
}
