package blockdev

import (
	"errors"
	"fmt"
	"log/slog"
	"unsafe"

	"golang.org/x/sys/unix"
)

// backing is an open regular file or block device shared by the aio (File)
// and uring implementations: geometry, open flags and the synchronous
// discard/zeroing paths. All fields are immutable after openBacking.
type backing struct {
	path   string
	fd     int
	size   int64 // bytes, a multiple of bs
	bs     int   // logical block size
	direct bool  // opened with O_DIRECT
	block  bool  // a block device (else a regular file)

	dioAlign uint32 // files: direct-I/O offset alignment from statx (0 unknown)
}

// openDirect opens path with O_DIRECT added to flags. Tests replace it to
// simulate filesystems without O_DIRECT.
var openDirect = func(path string, flags int) (int, error) {
	return unix.Open(path, flags|unix.O_DIRECT, 0)
}

// openBacking opens path for reading and writing. blockSize 0 means: the
// device's logical block size for block devices, 512 for files (or the
// file's direct-I/O alignment when that is larger). buffered skips O_DIRECT.
func openBacking(path string, blockSize int, buffered bool) (*backing, error) {
	if blockSize != 0 && blockSize != 512 && blockSize != 4096 {
		return nil, fmt.Errorf("%w: block size must be 512 or 4096, got %d", ErrInvalidURI, blockSize)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, openErr(path, err)
	}
	b := &backing{path: path, fd: -1}
	flags := unix.O_RDWR | unix.O_CLOEXEC
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		b.block = true
		flags |= unix.O_EXCL // refuse a device that is mounted or claimed
	case unix.S_IFREG:
	default:
		return nil, fmt.Errorf("%w: %s is neither a regular file nor a block device", ErrInvalidURI, path)
	}
	if err := b.open(flags, blockSize, buffered); err != nil {
		return nil, err
	}
	if err := b.geometry(blockSize); err != nil {
		unix.Close(b.fd)
		return nil, err
	}
	return b, nil
}

// open opens the descriptor, preferring O_DIRECT.
func (b *backing) open(flags, blockSize int, buffered bool) error {
	if !buffered {
		fd, err := openDirect(b.path, flags)
		if err == nil {
			b.fd, b.direct = fd, true
			if b.block || b.dioFits(blockSize) {
				return nil
			}
			unix.Close(fd)
			b.fd, b.direct = -1, false
		} else if !errors.Is(err, unix.EINVAL) {
			return openErr(b.path, err)
		} else {
			slog.Warn("blockdev: O_DIRECT not supported, using buffered I/O (flush will fdatasync)",
				"path", b.path, "err", err)
		}
	}
	fd, err := unix.Open(b.path, flags, 0)
	if err != nil {
		return openErr(b.path, err)
	}
	b.fd = fd
	return nil
}

// dioFits reports whether direct I/O on the open file works at blockSize
// granularity; if not it logs why buffered I/O is used instead.
func (b *backing) dioFits(blockSize int) bool {
	var sx unix.Statx_t
	if err := unix.Statx(b.fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &sx); err != nil ||
		sx.Mask&unix.STATX_DIOALIGN == 0 || sx.Dio_offset_align == 0 {
		return true // unknown: trust the open
	}
	b.dioAlign = sx.Dio_offset_align
	want := blockSize
	if want == 0 {
		want = 4096
	}
	if int(sx.Dio_offset_align) > want || sx.Dio_mem_align > memAlign {
		slog.Warn("blockdev: direct I/O alignment larger than block size, using buffered I/O (flush will fdatasync)",
			"path", b.path, "dio_offset_align", sx.Dio_offset_align, "dio_mem_align", sx.Dio_mem_align, "blk_size", blockSize)
		return false
	}
	return true
}

// geometry fills size and bs.
func (b *backing) geometry(blockSize int) error {
	if b.block {
		sz, err := unix.IoctlGetUint64(b.fd, unix.BLKGETSIZE64)
		if err != nil {
			return fmt.Errorf("blockdev: BLKGETSIZE64 %s: %w", b.path, err)
		}
		lbs, err := unix.IoctlGetInt(b.fd, unix.BLKSSZGET)
		if err != nil {
			return fmt.Errorf("blockdev: BLKSSZGET %s: %w", b.path, err)
		}
		if blockSize == 0 {
			blockSize = lbs
		}
		if blockSize != 512 && blockSize != 4096 {
			return fmt.Errorf("%w: %s has logical block size %d (want 512 or 4096)", ErrInvalidURI, b.path, lbs)
		}
		if blockSize < lbs {
			return fmt.Errorf("%w: blk_size %d is smaller than the logical block size %d of %s", ErrInvalidURI, blockSize, lbs, b.path)
		}
		b.bs, b.size = blockSize, int64(sz)
	} else {
		var st unix.Stat_t
		if err := unix.Fstat(b.fd, &st); err != nil {
			return fmt.Errorf("blockdev: fstat %s: %w", b.path, err)
		}
		if blockSize == 0 {
			blockSize = 512
			if b.direct && b.dioAlign > 512 {
				blockSize = 4096 // e.g. a file on a 4Kn disk
			}
		}
		b.bs, b.size = blockSize, st.Size
	}
	b.size -= b.size % int64(b.bs)
	if b.size == 0 {
		return fmt.Errorf("%w: %s is smaller than one %d-byte block", ErrInvalidURI, b.path, b.bs)
	}
	return nil
}

// openErr classifies an open/stat error.
func openErr(path string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%w: %s: %w", ErrNotFound, path, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w: %s is open exclusively elsewhere or mounted: %w", ErrBusy, path, err)
	case errors.Is(err, unix.EROFS), errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w: open %s: %w", ErrReadOnly, path, err)
	}
	return fmt.Errorf("blockdev: open %s: %w", path, err)
}

// ioErr classifies an error from a read, write, sync or fallocate.
func ioErr(op, path string, off int64, err error) error {
	switch {
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return fmt.Errorf("%w: %s %s at %d: %w", ErrNoSpace, op, path, off, err)
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("%w: %s %s at %d: %w", ErrReadOnly, op, path, off, err)
	}
	return fmt.Errorf("%w: %s %s at %d: %w", ErrIO, op, path, off, err)
}

// errShort reports a read or write that made no progress (the file shrank
// under the device).
var errShort = errors.New("no progress (file truncated?)")

// discard tells the storage the range is unused: punch a hole in a file,
// BLKDISCARD on a block device. Storage that cannot discard ignores it
// (unmap is advisory).
func (b *backing) discard(off, length int64) error {
	var err error
	if b.block {
		r := [2]uint64{uint64(off), uint64(length)}
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(b.fd), unix.BLKDISCARD, uintptr(unsafe.Pointer(&r[0])))
		if e != 0 {
			err = e
		}
	} else {
		err = fallocate(b.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	}
	if err == nil || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) {
		return nil
	}
	return ioErr("discard", b.path, off, err)
}

// zeroRange makes the range read as zeros without writing data:
// fallocate(ZERO_RANGE), else PUNCH_HOLE on files. ok=false means neither
// is supported and the caller must write zeros.
func (b *backing) zeroRange(off, length int64) (ok bool, err error) {
	err = fallocate(b.fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	if notSupported(err) && !b.block {
		err = fallocate(b.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	}
	if notSupported(err) {
		return false, nil
	}
	if err != nil {
		return false, ioErr("write zeroes", b.path, off, err)
	}
	return true, nil
}

// notSupported reports whether err means "this fallocate mode is not
// available here".
func notSupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENODEV)
}

// fallocateSys is unix.Fallocate; tests replace it to simulate storage
// without zeroing or hole punching.
var fallocateSys = unix.Fallocate

func fallocate(fd int, mode uint32, off, length int64) error {
	for {
		err := fallocateSys(fd, mode, off, length)
		if err != unix.EINTR {
			return err
		}
	}
}

// allocated reports whether [off, off+length) may hold data, using
// SEEK_DATA on files; block devices always may.
func (b *backing) allocated(off, length int64) (bool, error) {
	if b.block {
		return true, nil
	}
	data, err := unix.Seek(b.fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		return false, nil // no data at or after off
	case err != nil:
		return true, nil // SEEK_DATA unsupported: assume data
	}
	return data < off+length, nil
}

// writeZeroesFallback writes zeros over the range with write, for storage
// without a zeroing fallocate.
func writeZeroesFallback(off, length int64, write func(p []byte, off int64) (int, error)) error {
	z := zeroBuf()
	for length > 0 {
		n := min(length, int64(len(z)))
		if _, err := write(z[:n], off); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

func (b *backing) close() error {
	if err := unix.Close(b.fd); err != nil {
		return fmt.Errorf("blockdev: close %s: %w", b.path, err)
	}
	return nil
}

// String names a device for logs and errors.
func (b *backing) String() string {
	mode := "direct"
	if !b.direct {
		mode = "buffered"
	}
	return fmt.Sprintf("%s (%d bytes, %d-byte blocks, %s)", b.path, b.size, b.bs, mode)
}
