package nbd

import "sync"

// connBudget bounds the payload bytes of large requests (above
// keepBufMaxLen) in flight on one connection, so 128 slots of 32 MiB
// requests cannot pin 4 GiB. Small requests are not charged: all slots
// together hold at most numSlots*keepBufMaxLen of them.
const connBudget = 64 << 20

// budget is a byte semaphore. Only the connection's reader acquires;
// whoever finishes a request releases.
type budget struct {
	mu   sync.Mutex // guards used; held only to update it
	cond sync.Cond  // signalled on release
	used int64
}

// tryAcquire takes n bytes if that fits (or nothing else is charged).
func (b *budget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && b.used+n > connBudget {
		return false
	}
	b.used += n
	return true
}

// acquire waits until n bytes fit, then takes them. A request larger than
// the whole budget runs once nothing else is charged.
func (b *budget) acquire(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cond.L == nil {
		b.cond.L = &b.mu
	}
	for b.used > 0 && b.used+n > connBudget {
		b.cond.Wait()
	}
	b.used += n
}

// release returns n bytes.
func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	if b.cond.L != nil {
		b.cond.Signal()
	}
	b.mu.Unlock()
}
