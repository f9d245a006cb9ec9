package rebuild

import "sync"

// RangeLock is a reader/writer lock over ranges of segment indexes.
//
// Application writes take a range shared (many may hold overlapping shared
// ranges); a rebuild copy task takes one segment exclusive. An exclusive
// waiter blocks new overlapping shared holders (writer preference), so a
// steady stream of client writes cannot starve a rebuild.
//
// The nexus only takes the lock while a rebuild is running, so the cost is
// paid only then. Holders are kept in a small slice scanned linearly: the
// number of holders is bounded by the client queue depth.
type RangeLock struct {
	mu      sync.Mutex // guards held, waiting, nextID
	cond    sync.Cond
	held    []lockEntry
	waiting []lockEntry // exclusive waiters
	nextID  uint64
}

type lockEntry struct {
	lo, hi int64 // inclusive segment indexes
	excl   bool
	id     uint64
}

// LockHandle identifies one held range; pass it to Unlock.
type LockHandle uint64

// NewRangeLock returns an unlocked RangeLock.
func NewRangeLock() *RangeLock {
	l := &RangeLock{held: make([]lockEntry, 0, 64)}
	l.cond.L = &l.mu
	return l
}

func overlaps(a, b lockEntry) bool { return a.lo <= b.hi && b.lo <= a.hi }

// LockShared takes segments [lo, hi] shared, waiting for overlapping
// exclusive holders and waiters.
func (l *RangeLock) LockShared(lo, hi int64) LockHandle {
	e := lockEntry{lo: lo, hi: hi}
	l.mu.Lock()
	for l.conflictsLocked(e, true) {
		l.cond.Wait()
	}
	h := l.addLocked(e)
	l.mu.Unlock()
	return h
}

// LockExclusive takes segments [lo, hi] exclusively.
func (l *RangeLock) LockExclusive(lo, hi int64) LockHandle {
	e := lockEntry{lo: lo, hi: hi, excl: true}
	l.mu.Lock()
	l.nextID++
	w := e
	w.id = l.nextID
	l.waiting = append(l.waiting, w)
	for l.conflictsLocked(e, false) {
		l.cond.Wait()
	}
	for i := range l.waiting {
		if l.waiting[i].id == w.id {
			l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
			break
		}
	}
	h := l.addLocked(e)
	l.mu.Unlock()
	return h
}

// conflictsLocked reports whether e must wait. Shared requests also yield
// to exclusive waiters.
func (l *RangeLock) conflictsLocked(e lockEntry, shared bool) bool {
	for _, h := range l.held {
		if overlaps(h, e) && (h.excl || e.excl) {
			return true
		}
	}
	if shared {
		for _, w := range l.waiting {
			if overlaps(w, e) {
				return true
			}
		}
	}
	return false
}

func (l *RangeLock) addLocked(e lockEntry) LockHandle {
	l.nextID++
	e.id = l.nextID
	l.held = append(l.held, e)
	return LockHandle(e.id)
}

// Unlock releases a range taken with LockShared or LockExclusive.
func (l *RangeLock) Unlock(h LockHandle) {
	l.mu.Lock()
	for i := range l.held {
		if l.held[i].id == uint64(h) {
			last := len(l.held) - 1
			l.held[i] = l.held[last]
			l.held = l.held[:last]
			break
		}
	}
	l.mu.Unlock()
	l.cond.Broadcast()
}
