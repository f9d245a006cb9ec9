// Package blockdev defines the block-device abstraction every layer of Kura
// builds on, and opens devices by URI.
//
// Implementations: file (aio:// and bare paths, O_DIRECT pread/pwrite),
// uring (io_uring), malloc (memory), fault (fault injection wrapper), and —
// registered by other packages — nvmf:// (NVMe/TCP initiator), bdev:// and
// loopback:// (devices already open in an engine), and the nexus.
package blockdev

import "errors"

// Device is a block device.
//
// Contract (checked by blockdevtest.Run against every implementation):
//
//   - Offsets and lengths of ReadAt, WriteAt, Unmap and WriteZeroes must be
//     multiples of BlockSize, and the range must lie within [0, Size).
//     Otherwise the call fails with an error wrapping ErrMisaligned or
//     ErrOutOfRange and does nothing.
//   - ReadAt and WriteAt follow io.ReaderAt / io.WriterAt: n < len(p) only
//     with a non-nil error. Implementations must not retain p after return.
//     p may be any Go memory; implementations that need aligned buffers
//     (O_DIRECT) copy through their own aligned buffers.
//   - Clients may issue concurrent calls on non-overlapping ranges. The
//     result of concurrent overlapping writes is unspecified (one of them
//     wins per block), never a crash.
//   - A write is durable once Flush returns nil after the write completed
//     (or once WriteAt returns nil if the device is opened write-through).
//     Flush covers every write that completed before Flush was called.
//   - Unmap tells the device the range is no longer needed; reads of an
//     unmapped range return either the old data or zeros (devices that
//     advertise zeroing unmap via Info return zeros). WriteZeroes makes reads
//     of the range return zeros.
//   - Never-written blocks read as zeros on devices created by Kura (malloc,
//     pool replicas, nexus over those). A raw file reads whatever it holds.
//   - After Close, every method fails with ErrClosed.
type Device interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Flush() error
	Unmap(off, length int64) error
	WriteZeroes(off, length int64) error
	// Size is the device size in bytes (a multiple of BlockSize).
	Size() int64
	// BlockSize is the logical block size: 512 or 4096.
	BlockSize() int
	Close() error
}

// Allocation is implemented by devices that know which ranges hold data
// (thin replicas, malloc). Rebuild uses it to skip never-written space.
type Allocation interface {
	// Allocated reports whether any block in [off, off+length) may hold
	// data. False means the whole range reads as zeros.
	Allocated(off, length int64) (bool, error)
}

// Resizer is implemented by devices whose size can change online.
type Resizer interface {
	Resize(newSize int64) error
}

// Errors returned (wrapped) by devices. Classify with errors.Is.
var (
	ErrMisaligned    = errors.New("blockdev: offset or length not a multiple of the block size")
	ErrOutOfRange    = errors.New("blockdev: range beyond end of device")
	ErrClosed        = errors.New("blockdev: device closed")
	ErrNoSpace       = errors.New("blockdev: no space left")
	ErrReadOnly      = errors.New("blockdev: device is read-only")
	ErrIO            = errors.New("blockdev: I/O error")
	ErrTimeout       = errors.New("blockdev: I/O timed out")
	ErrInvalidURI    = errors.New("blockdev: invalid device URI")
	ErrUnknownScheme = errors.New("blockdev: unknown URI scheme")
	ErrNotFound      = errors.New("blockdev: device not found")
	ErrBusy          = errors.New("blockdev: device in use")
)

// CheckRange validates an I/O range against a device's geometry. It is the
// one place implementations check alignment and bounds.
func CheckRange(off, length int64, blockSize int, size int64) error {
	bs := int64(blockSize)
	if off < 0 || length < 0 || off%bs != 0 || length%bs != 0 {
		return fmtErr(ErrMisaligned, off, length, blockSize)
	}
	if off > size || length > size-off {
		return fmtRange(off, length, size)
	}
	return nil
}
