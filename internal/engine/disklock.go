package engine

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/kura-io/kura/internal/blockdev"
)

// diskLock is an advisory lock (flock) on the file under a pool's disk,
// held while the pool is imported, so two engine processes on one host
// never import the same pool (claims only guard within one engine). Block
// devices other than loop devices are opened O_EXCL instead; the kernel
// drops the lock when the process dies, so a SIGKILLed engine never
// leaves its disks locked.
type diskLock struct{ f *os.File }

// lockDisk locks the file under disk (a file path or a loop device's
// backing file). Disks that are not local files get no lock (nil).
func lockDisk(disk string) (*diskLock, error) {
	u, err := blockdev.ParseURI(disk)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "aio", "uring", "file":
	default:
		return nil, nil
	}
	path, st, err := resolveDisk(u.Path)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, nil // missing (the open reports it) or a plain block device (O_EXCL)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lock disk %q: %w", disk, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("disk %q is %w by another process (another engine holds its pool)", disk, ErrInUse)
		}
		return nil, fmt.Errorf("lock disk %q: %w", disk, err)
	}
	return &diskLock{f: f}, nil
}

// unlock releases the lock; nil-safe and idempotent.
func (l *diskLock) unlock() {
	if l != nil && l.f != nil {
		l.f.Close() // closing the descriptor releases the flock
		l.f = nil
	}
}
