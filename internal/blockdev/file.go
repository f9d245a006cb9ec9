package blockdev

import (
	"context"
	"fmt"
	"net/url"

	"golang.org/x/sys/unix"
)

// FileOptions configures OpenFile.
type FileOptions struct {
	// BlockSize is the logical block size, 512 or 4096. Zero means the
	// device's logical block size (block devices) or 512 (files; 4096 when
	// the file's direct-I/O alignment requires it).
	BlockSize int
	// Buffered disables O_DIRECT (data goes through the page cache; Flush
	// still makes it durable with fdatasync).
	Buffered bool
}

// File is the aio device: a regular file or a block device accessed with
// pread/pwrite, using O_DIRECT where the filesystem supports it. Caller
// memory that is not 4096-aligned is copied through pooled aligned buffers.
// Block devices are opened with O_EXCL, so one that is in use is refused
// with ErrBusy.
type File struct {
	b    *backing
	gate *gate // I/O in flight vs Close
}

var (
	_ Device     = (*File)(nil)
	_ Allocation = (*File)(nil)
)

// OpenFile opens a regular file or block device as a Device.
func OpenFile(path string, opts FileOptions) (*File, error) {
	b, err := openBacking(path, opts.BlockSize, opts.Buffered)
	if err != nil {
		return nil, err
	}
	return &File{b: b, gate: newGate()}, nil
}

// openAIO opens aio:///path?blk_size=N (and bare absolute paths).
func openAIO(_ context.Context, u *url.URL) (Device, error) {
	path, bs, err := localPathParams(u)
	if err != nil {
		return nil, err
	}
	return OpenFile(path, FileOptions{BlockSize: bs})
}

// localPathParams validates a scheme:///absolute/path?blk_size=N URI.
func localPathParams(u *url.URL) (string, int, error) {
	if u.Opaque != "" || u.Host != "" || len(u.Path) < 2 || u.Path[0] != '/' {
		return "", 0, fmt.Errorf("%w %q: want %s:///absolute/path", ErrInvalidURI, u.Redacted(), u.Scheme)
	}
	p := NewParams(u)
	bs := p.BlockSize(0)
	if err := p.Done(); err != nil {
		return "", 0, err
	}
	return u.Path, bs, nil
}

// Size returns the device size: the file size rounded down to the block size.
func (f *File) Size() int64 { return f.b.size }

// BlockSize returns the logical block size.
func (f *File) BlockSize() int { return f.b.bs }

// Direct reports whether the device uses O_DIRECT.
func (f *File) Direct() bool { return f.b.direct }

// String describes the device.
func (f *File) String() string { return "aio " + f.b.String() }

// enter checks the range and registers an I/O; on nil the caller must call
// f.gate.exit.
func (f *File) enter(off, length int64) error {
	if err := CheckRange(off, length, f.b.bs, f.b.size); err != nil {
		return err
	}
	if !f.gate.enter() {
		return ErrClosed
	}
	return nil
}

// ReadAt reads len(p) bytes at off.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if err := f.enter(off, int64(len(p))); err != nil {
		return 0, err
	}
	defer f.gate.exit()
	if !f.b.direct || isAligned(p) {
		return f.pio(false, p, off)
	}
	bb := bouncePool.Get().(*alignedBuf)
	defer bouncePool.Put(bb)
	done := 0
	for done < len(p) {
		n := min(len(p)-done, len(bb.b))
		m, err := f.pio(false, bb.b[:n], off+int64(done))
		done += copy(p[done:done+m], bb.b[:m])
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// WriteAt writes p at off.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if err := f.enter(off, int64(len(p))); err != nil {
		return 0, err
	}
	defer f.gate.exit()
	if !f.b.direct || isAligned(p) {
		return f.pio(true, p, off)
	}
	bb := bouncePool.Get().(*alignedBuf)
	defer bouncePool.Put(bb)
	done := 0
	for done < len(p) {
		n := min(len(p)-done, len(bb.b))
		copy(bb.b, p[done:done+n])
		m, err := f.pio(true, bb.b[:n], off+int64(done))
		done += m
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// pio runs pread or pwrite until p is done.
func (f *File) pio(write bool, p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		var n int
		var err error
		if write {
			n, err = unix.Pwrite(f.b.fd, p[done:], off+int64(done))
		} else {
			n, err = unix.Pread(f.b.fd, p[done:], off+int64(done))
		}
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err != nil:
			return done, ioErr(opName(write), f.b.path, off+int64(done), err)
		case n == 0:
			return done, ioErr(opName(write), f.b.path, off+int64(done), errShort)
		}
		done += n
	}
	return done, nil
}

func opName(write bool) string {
	if write {
		return "write"
	}
	return "read"
}

// Flush makes completed writes durable (fdatasync).
func (f *File) Flush() error {
	if !f.gate.enter() {
		return ErrClosed
	}
	defer f.gate.exit()
	for {
		err := unix.Fdatasync(f.b.fd)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ioErr("fdatasync", f.b.path, 0, err)
		}
		return nil
	}
}

// Unmap punches a hole (files) or discards (block devices). Reads of the
// range then return zeros on files and old data or zeros on block devices.
func (f *File) Unmap(off, length int64) error {
	if err := f.enter(off, length); err != nil {
		return err
	}
	defer f.gate.exit()
	if length == 0 {
		return nil
	}
	return f.b.discard(off, length)
}

// WriteZeroes makes the range read as zeros: fallocate(ZERO_RANGE), else
// PUNCH_HOLE, else by writing zeros.
func (f *File) WriteZeroes(off, length int64) error {
	if err := f.enter(off, length); err != nil {
		return err
	}
	defer f.gate.exit()
	if length == 0 {
		return nil
	}
	if ok, err := f.b.zeroRange(off, length); ok || err != nil {
		return err
	}
	return writeZeroesFallback(off, length, func(p []byte, off int64) (int, error) { return f.pio(true, p, off) })
}

// Allocated reports whether the range may hold data (SEEK_DATA on files;
// always true on block devices).
func (f *File) Allocated(off, length int64) (bool, error) {
	if err := f.enter(off, length); err != nil {
		return false, err
	}
	defer f.gate.exit()
	return f.b.allocated(off, length)
}

// Close waits for I/O in flight and closes the descriptor. Later calls fail
// with ErrClosed.
func (f *File) Close() error {
	if !f.gate.close() {
		return ErrClosed
	}
	return f.b.close()
}
