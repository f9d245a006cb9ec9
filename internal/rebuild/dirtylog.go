package rebuild

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Dirty-log file layout (version 1), little-endian:
//
//	[0, 8)    magic "KURADLOG"
//	[8, 12)   version (1)
//	[12, 20)  segment size in bytes
//	[20, 28)  segment count
//	[28, 32)  CRC-32C of bytes [0, 28)
//	[4096, …) bitmap, 64 segments per little-endian uint64 word
//
// Bits only ever go from 0 to 1 while the file exists, so updating words in
// place is safe even if a write tears at a sector boundary: every sector
// holds either the old or the new words, and both are subsets of the truth
// that was acknowledged before.
const (
	logMagic      = "KURADLOG"
	logVersion    = 1
	logHeaderSize = 4096
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// DirtyLog records which segments were written while a child was away.
// Mark returns only once the marked segments are durable; concurrent Marks
// share one write+fdatasync (group commit), and re-marking a durable
// segment costs two atomic loads. Safe for concurrent use.
type DirtyLog struct {
	path    string // "" = memory only
	segSize int64
	bits    *Bitmap // segments marked (maybe not yet durable)
	durable *Bitmap // segments known to be on disk

	mu      sync.Mutex // guards the fields below and f
	cond    sync.Cond  // broadcast when a sync finishes
	f       *os.File
	gen     uint64 // bumped for every newly set bit
	synced  uint64 // gen covered by the last finished sync
	syncing bool   // a leader is writing
	wlo     int    // dirty word range [wlo, whi) since last sync
	whi     int
	scratch []byte
	err     error // sticky I/O error
	closed  bool
}

// OpenLog opens the log at path, creating it (empty, durably) if absent.
// existed reports whether a usable log was found. An existing log with a
// different geometry fails with ErrLogMismatch. path "" gives a memory-only
// log that does not survive a restart.
func OpenLog(path string, segSize, nseg int64) (l *DirtyLog, existed bool, err error) {
	l = &DirtyLog{path: path, segSize: segSize, bits: NewBitmap(nseg), durable: NewBitmap(nseg), wlo: -1}
	l.cond.L = &l.mu
	if path == "" {
		l.durable = l.bits
		return l, false, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	switch {
	case err == nil:
		if err := l.load(f, nseg); err != nil {
			f.Close()
			return nil, false, err
		}
		l.f = f
		return l, true, nil
	case errors.Is(err, fs.ErrNotExist):
		if err := l.create(nseg); err != nil {
			return nil, false, err
		}
		return l, false, nil
	default:
		return nil, false, fmt.Errorf("rebuild: open dirty log: %w", err)
	}
}

func header(segSize, nseg int64) []byte {
	h := make([]byte, logHeaderSize)
	copy(h, logMagic)
	binary.LittleEndian.PutUint32(h[8:], logVersion)
	binary.LittleEndian.PutUint64(h[12:], uint64(segSize))
	binary.LittleEndian.PutUint64(h[20:], uint64(nseg))
	binary.LittleEndian.PutUint32(h[28:], crc32.Checksum(h[:28], castagnoli))
	return h
}

func (l *DirtyLog) load(f *os.File, nseg int64) error {
	want := header(l.segSize, nseg)
	got := make([]byte, logHeaderSize)
	if _, err := f.ReadAt(got, 0); err != nil {
		return fmt.Errorf("%w: %s: read header: %v", ErrLogCorrupt, l.path, err)
	}
	if string(got[:8]) != logMagic || crc32.Checksum(got[:28], castagnoli) != binary.LittleEndian.Uint32(got[28:]) {
		return fmt.Errorf("%w: %s: bad header", ErrLogCorrupt, l.path)
	}
	if string(got[:32]) != string(want[:32]) {
		return fmt.Errorf("%w: %s: segment size %d count %d, want %d/%d", ErrLogMismatch, l.path,
			binary.LittleEndian.Uint64(got[12:]), binary.LittleEndian.Uint64(got[20:]), l.segSize, nseg)
	}
	words := make([]byte, len(l.bits.words)*8)
	if _, err := f.ReadAt(words, logHeaderSize); err != nil {
		return fmt.Errorf("%w: %s: read bitmap: %v", ErrLogCorrupt, l.path, err)
	}
	l.bits.loadBytes(words)
	l.durable.loadBytes(words)
	return nil
}

func (l *DirtyLog) create(nseg int64) error {
	dir := filepath.Dir(l.path)
	tmp, err := os.CreateTemp(dir, filepath.Base(l.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("rebuild: create dirty log: %w", err)
	}
	buf := append(header(l.segSize, nseg), make([]byte, len(l.bits.words)*8)...)
	_, err = tmp.WriteAt(buf, 0)
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), l.path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("rebuild: create dirty log %s: %w", l.path, err)
	}
	l.f = tmp
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Path returns the file path ("" for a memory-only log).
func (l *DirtyLog) Path() string { return l.path }

// Mark records that [off, off+length) was written and returns once the
// record is durable.
func (l *DirtyLog) Mark(off, length int64) error {
	if length <= 0 {
		return nil
	}
	lo, hi := off/l.segSize, (off+length-1)/l.segSize
	if l.durable.AllSet(lo, hi) {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := lo; i <= hi; i++ {
		l.setLocked(i)
	}
	return l.commitLocked()
}

// MarkBitmap records every segment set in b (same length) with one sync.
func (l *DirtyLog) MarkBitmap(b *Bitmap) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := b.Next(0); i >= 0; i = b.Next(i + 1) {
		l.setLocked(i)
	}
	return l.commitLocked()
}

func (l *DirtyLog) setLocked(i int64) {
	if l.bits.Set(i) {
		l.gen++
		w := int(i / 64)
		if l.wlo < 0 || w < l.wlo {
			l.wlo = w
		}
		if w+1 > l.whi {
			l.whi = w + 1
		}
	}
}

// commitLocked waits until every bit set so far is durable, leading a
// sync if none is running (group commit).
func (l *DirtyLog) commitLocked() error {
	if l.path == "" {
		return nil
	}
	my := l.gen
	for l.synced < my {
		if l.err != nil {
			return l.err
		}
		if l.closed {
			// Closed logs belong to removed children or a stopped nexus:
			// nothing will read them again.
			return nil
		}
		if l.syncing {
			l.cond.Wait()
			continue
		}
		l.syncLocked()
	}
	return l.err
}

// syncLocked writes the dirty words and fdatasyncs, dropping mu meanwhile.
func (l *DirtyLog) syncLocked() {
	l.syncing = true
	g, wlo, whi := l.gen, l.wlo, l.whi
	l.wlo, l.whi = -1, 0
	buf := l.bits.appendBytes(l.scratch[:0], wlo, whi)
	l.scratch = buf
	f := l.f
	l.mu.Unlock()
	_, err := f.WriteAt(buf, logHeaderSize+int64(wlo)*8)
	if err == nil {
		err = fdatasync(f)
	}
	l.mu.Lock()
	l.syncing = false
	if err != nil {
		l.err = fmt.Errorf("rebuild: write dirty log %s: %w", l.path, err)
	} else {
		for i := wlo; i < whi; i++ {
			l.durable.words[i].Store(binary.LittleEndian.Uint64(buf[(i-wlo)*8:]))
		}
		l.synced = g
	}
	l.cond.Broadcast()
}

// Bitmap returns a copy of the marked segments.
func (l *DirtyLog) Bitmap() *Bitmap { return l.bits.Clone() }

// Count returns the number of marked segments.
func (l *DirtyLog) Count() int64 { return l.bits.Count() }

// Close closes the file, keeping it on disk.
func (l *DirtyLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.syncing {
		l.cond.Wait()
	}
	if l.closed {
		return nil
	}
	l.closed = true
	l.cond.Broadcast()
	if l.f != nil {
		return l.f.Close()
	}
	return nil
}

// Remove closes the log and deletes its file (durably).
func (l *DirtyLog) Remove() error {
	if err := l.Close(); err != nil {
		return err
	}
	if l.path == "" {
		return nil
	}
	if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rebuild: remove dirty log: %w", err)
	}
	return syncDir(filepath.Dir(l.path))
}
