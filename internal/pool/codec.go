package pool

import (
	"encoding/binary"
	"hash/crc32"
)

// castagnoli is the CRC32C table used for every on-disk checksum.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// enc appends little-endian fields to a byte slice.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)     { e.b = append(e.b, v) }
func (e *enc) u16(v uint16)   { e.b = binary.LittleEndian.AppendUint16(e.b, v) }
func (e *enc) u32(v uint32)   { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64)   { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) bytes(v []byte) { e.b = append(e.b, v...) }
func (e *enc) str(s string)   { e.u16(uint16(len(s))); e.b = append(e.b, s...) }

// dec reads little-endian fields with bounds checks; the first short read
// sets bad and every later read returns zero.
type dec struct {
	b   []byte
	bad bool
}

func (d *dec) take(n int) []byte {
	if d.bad || n < 0 || n > len(d.b) {
		d.bad = true
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *dec) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (d *dec) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (d *dec) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

// str reads a u16-length-prefixed string of at most max bytes.
func (d *dec) str(max int) string {
	n := int(d.u16())
	if n > max {
		d.bad = true
		return ""
	}
	return string(d.take(n))
}

// count reads a u32 element count and checks that n elements of at least
// minSize bytes each can still follow, so callers never allocate for
// counts the input cannot back.
func (d *dec) count(minSize int) int {
	n := d.u32()
	if d.bad || uint64(n)*uint64(minSize) > uint64(len(d.b)) {
		d.bad = true
		return 0
	}
	return int(n)
}

func alignUp(v, a int64) int64   { return (v + a - 1) / a * a }
func alignDown(v, a int64) int64 { return v / a * a }
