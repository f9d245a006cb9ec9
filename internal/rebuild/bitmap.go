package rebuild

import (
	"math/bits"
	"sync/atomic"
)

// Bitmap is a fixed-size set of segment indexes. All methods are safe for
// concurrent use; each bit operation is atomic, multi-bit operations are not
// atomic as a whole.
type Bitmap struct {
	n     int64
	words []atomic.Uint64
}

// NewBitmap returns an empty bitmap of n bits.
func NewBitmap(n int64) *Bitmap {
	return &Bitmap{n: n, words: make([]atomic.Uint64, (n+63)/64)}
}

// Len is the number of bits.
func (b *Bitmap) Len() int64 { return b.n }

// Set sets bit i and reports whether it was clear before.
func (b *Bitmap) Set(i int64) bool {
	w, m := &b.words[i/64], uint64(1)<<(uint(i)%64)
	return w.Or(m)&m == 0
}

// Clear clears bit i.
func (b *Bitmap) Clear(i int64) { b.words[i/64].And(^(uint64(1) << (uint(i) % 64))) }

// Test reports bit i.
func (b *Bitmap) Test(i int64) bool { return b.words[i/64].Load()&(uint64(1)<<(uint(i)%64)) != 0 }

// AllSet reports whether every bit in [lo, hi] is set.
func (b *Bitmap) AllSet(lo, hi int64) bool {
	for i := lo; i <= hi; i++ {
		if !b.Test(i) {
			return false
		}
	}
	return true
}

// SetAll sets every bit.
func (b *Bitmap) SetAll() {
	for i := int64(0); i < b.n; i++ {
		b.Set(i)
	}
}

// Count returns the number of set bits.
func (b *Bitmap) Count() int64 {
	var c int64
	for i := range b.words {
		c += int64(bits.OnesCount64(b.words[i].Load()))
	}
	return c
}

// Next returns the first set bit >= from, or -1.
func (b *Bitmap) Next(from int64) int64 {
	for from < b.n {
		w := b.words[from/64].Load() >> (uint(from) % 64)
		if w != 0 {
			i := from + int64(bits.TrailingZeros64(w))
			if i < b.n {
				return i
			}
			return -1
		}
		from = (from/64 + 1) * 64
	}
	return -1
}

// Clone returns an independent copy.
func (b *Bitmap) Clone() *Bitmap {
	c := NewBitmap(b.n)
	for i := range b.words {
		c.words[i].Store(b.words[i].Load())
	}
	return c
}

// Or sets every bit set in o (same length).
func (b *Bitmap) Or(o *Bitmap) {
	for i := range b.words {
		b.words[i].Or(o.words[i].Load())
	}
}

// appendBytes appends words [lo, hi) little-endian.
func (b *Bitmap) appendBytes(dst []byte, lo, hi int) []byte {
	for i := lo; i < hi; i++ {
		v := b.words[i].Load()
		for k := 0; k < 8; k++ {
			dst = append(dst, byte(v>>(8*k)))
		}
	}
	return dst
}

// loadBytes sets the words from little-endian bytes.
func (b *Bitmap) loadBytes(src []byte) {
	for i := range b.words {
		var v uint64
		for k := 0; k < 8; k++ {
			v |= uint64(src[i*8+k]) << (8 * k)
		}
		b.words[i].Store(v)
	}
}
