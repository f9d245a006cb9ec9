package engine

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/kura-io/kura/internal/blockdev"
)

// deviceKey returns a canonical identity for the device a URI names, so
// that /dev/loop8, a symlink to it and aio:///dev/loop8?blk_size=512 all
// count as the same disk.
func deviceKey(uri string) (string, error) {
	u, err := blockdev.ParseURI(uri)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "aio", "uring", "file":
		if u.Path == "" {
			return "", fmt.Errorf("%w %q: no path", blockdev.ErrInvalidURI, uri)
		}
		p, st, err := resolveDisk(u.Path)
		if err != nil {
			return "path:" + p, nil
		}
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			return fmt.Sprintf("blk:%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))), nil
		}
		return fmt.Sprintf("file:%d:%d", st.Dev, st.Ino), nil
	case "bdev", "loopback":
		return "local:" + strings.Trim(u.Host+u.Path, "/"), nil
	default:
		return u.Scheme + "://" + u.Host + u.Path, nil
	}
}

// claim marks key as used by owner. Callers hold e.mu.
// resolveDisk resolves a disk path (absolute, symlinks followed) and
// stats it; a loop device resolves to its backing file, which is the same
// disk.
func resolveDisk(path string) (string, unix.Stat_t, error) {
	var st unix.Stat_t
	p := path
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	if err := unix.Stat(p, &st); err != nil {
		return p, st, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		maj, mnr := unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
		if bf := readTrim(fmt.Sprintf("/sys/dev/block/%d:%d/loop/backing_file", maj, mnr)); bf != "" {
			var bst unix.Stat_t
			if err := unix.Stat(bf, &bst); err == nil {
				return bf, bst, nil
			}
		}
	}
	return p, st, nil
}

func (e *Engine) claimLocked(key, owner, disk string) error {
	if o, ok := e.mu.claims[key]; ok {
		return fmt.Errorf("disk %q is %w by %s", disk, ErrInUse, o)
	}
	e.mu.claims[key] = owner
	return nil
}

// openLocal opens bdev:///NAME and loopback:///NAME: a bdev open in this
// engine or a replica (by name or UUID). The returned handle borrows the
// device: closing it does not close the bdev or replica, and while it is
// open the object cannot be destroyed.
func (e *Engine) openLocal(_ context.Context, u *url.URL) (blockdev.Device, error) {
	name := strings.Trim(u.Host+u.Path, "/")
	p := blockdev.NewParams(u)
	wantUUID := p.String("uuid", "")
	if err := p.Done(); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("%w %q: want %s:///NAME", blockdev.ErrInvalidURI, u.Redacted(), u.Scheme)
	}
	dev, key, uuid, err := e.lookupLocal(name)
	if err != nil {
		return nil, err
	}
	if wantUUID != "" && !strings.EqualFold(wantUUID, uuid) {
		return nil, fmt.Errorf("%w: %s has uuid %s, not %s", blockdev.ErrNotFound, name, uuid, wantUUID)
	}
	e.mu.Lock()
	e.mu.refs[key]++
	e.mu.Unlock()
	b := &borrowed{Device: dev, release: func() {
		e.mu.Lock()
		if e.mu.refs[key]--; e.mu.refs[key] <= 0 {
			delete(e.mu.refs, key)
		}
		e.mu.Unlock()
	}}
	if a, ok := dev.(blockdev.Async); ok {
		return &borrowedAsync{borrowed: b, a: a}, nil
	}
	return b, nil
}

// lookupLocal finds a bdev or replica by name (replicas also by UUID).
func (e *Engine) lookupLocal(name string) (dev blockdev.Device, key, uuid string, err error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if b, ok := e.mu.bdevs[name]; ok {
		return b.dev, bdevRefKey(b.name), "", nil
	}
	for _, pe := range e.mu.pools {
		if pe.p == nil {
			continue
		}
		r, err := pe.p.Replica(name)
		if err != nil {
			continue
		}
		info := r.Info()
		return r, replicaRefKey(info.UUID), info.UUID, nil
	}
	return nil, "", "", fmt.Errorf("%w: no bdev or replica named %q in this engine", blockdev.ErrNotFound, name)
}

func bdevRefKey(name string) string    { return "bdev:" + name }
func replicaRefKey(uuid string) string { return "replica:" + uuid }

// refsLocked returns the number of borrowed handles open on key.
func (e *Engine) refsLocked(key string) int { return e.mu.refs[key] }

// borrowed is a handle on a device owned by the engine. Close releases the
// handle only.
type borrowed struct {
	blockdev.Device
	release func()
	closed  atomic.Bool
}

func (b *borrowed) ReadAt(p []byte, off int64) (int, error) {
	if b.closed.Load() {
		return 0, blockdev.ErrClosed
	}
	return b.Device.ReadAt(p, off)
}

func (b *borrowed) WriteAt(p []byte, off int64) (int, error) {
	if b.closed.Load() {
		return 0, blockdev.ErrClosed
	}
	return b.Device.WriteAt(p, off)
}

func (b *borrowed) Flush() error {
	if b.closed.Load() {
		return blockdev.ErrClosed
	}
	return b.Device.Flush()
}

func (b *borrowed) Unmap(off, length int64) error {
	if b.closed.Load() {
		return blockdev.ErrClosed
	}
	return b.Device.Unmap(off, length)
}

func (b *borrowed) WriteZeroes(off, length int64) error {
	if b.closed.Load() {
		return blockdev.ErrClosed
	}
	return b.Device.WriteZeroes(off, length)
}

// Allocated forwards to the device when it tracks allocation; otherwise
// every range may hold data.
func (b *borrowed) Allocated(off, length int64) (bool, error) {
	if b.closed.Load() {
		return false, blockdev.ErrClosed
	}
	if a, ok := b.Device.(blockdev.Allocation); ok {
		return a.Allocated(off, length)
	}
	return true, nil
}

// borrowedAsync is a borrowed handle on a device with the asynchronous
// fast path (a pool replica on io_uring), which it keeps: a nexus over
// local replicas starts their I/O without worker hand-offs.
type borrowedAsync struct {
	*borrowed
	a blockdev.Async
}

// StartQueued forwards to the device while the handle is open.
func (b *borrowedAsync) StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool {
	return !b.closed.Load() && b.a.StartQueued(write, p, off, cb)
}

// Submit forwards to the device.
func (b *borrowedAsync) Submit() { b.a.Submit() }

// OpenQueue opens a per-thread queue on the device (blockdev.QueueOpener)
// whose operations, like the handle's, stop starting once the handle is
// closed; ErrNotSupported when the device has none.
func (b *borrowedAsync) OpenQueue() (blockdev.Queue, error) {
	qo, ok := b.Device.(blockdev.QueueOpener)
	if !ok {
		return nil, fmt.Errorf("%w: %T has no per-thread queues", blockdev.ErrNotSupported, b.Device)
	}
	q, err := qo.OpenQueue()
	if err != nil {
		return nil, err
	}
	return &borrowedQueue{Queue: q, b: b.borrowed}, nil
}

// JoinQueue returns a view of q for the device (blockdev.QueueJoiner),
// checked like OpenQueue's queues; ErrNotSupported when the device cannot.
func (b *borrowedAsync) JoinQueue(q blockdev.Queue) (blockdev.Queue, error) {
	qj, ok := b.Device.(blockdev.QueueJoiner)
	if !ok {
		return nil, fmt.Errorf("%w: %T cannot join a queue", blockdev.ErrNotSupported, b.Device)
	}
	v, err := qj.JoinQueue(q)
	if err != nil {
		return nil, err
	}
	return &borrowedQueue{Queue: v, b: b.borrowed}, nil
}

// borrowedQueue is a queue opened through a borrowed handle.
type borrowedQueue struct {
	blockdev.Queue
	b *borrowed
}

// Unwrap returns the device's queue (blockdev.QueueWrapper).
func (q *borrowedQueue) Unwrap() blockdev.Queue { return q.Queue }

// StartQueued forwards to the queue while the handle is open.
func (q *borrowedQueue) StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool {
	return !q.b.closed.Load() && q.Queue.StartQueued(write, p, off, cb)
}

func (b *borrowed) Close() error {
	if b.closed.Swap(true) {
		return blockdev.ErrClosed
	}
	b.release()
	return nil
}
