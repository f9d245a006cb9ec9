package nvmetcp

import (
	"encoding/binary"
	"hash/crc32"
)

// castagnoli is the CRC32C table used by both NVMe/TCP digests
// (NVMe/TCP 1.0 §3.6.1: initial value all ones, reflected, final XOR).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// digest returns the CRC32C of b.
func digest(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// putDigest appends nothing; it writes the little-endian digest of b into dst[0:4].
func putDigest(dst, b []byte) { binary.LittleEndian.PutUint32(dst, digest(b)) }
