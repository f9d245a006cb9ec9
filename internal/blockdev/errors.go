package blockdev

import "fmt"

func fmtErr(base error, off, length int64, bs int) error {
	return fmt.Errorf("%w (offset %d, length %d, block size %d)", base, off, length, bs)
}

func fmtRange(off, length, size int64) error {
	return fmt.Errorf("%w (offset %d, length %d, size %d)", ErrOutOfRange, off, length, size)
}
