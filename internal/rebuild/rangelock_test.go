package rebuild

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRangeLockExclusion(t *testing.T) {
	l := NewRangeLock()
	h := l.LockExclusive(5, 5)
	got := make(chan struct{})
	go func() {
		h2 := l.LockShared(4, 6) // overlaps: must wait
		close(got)
		l.Unlock(h2)
	}()
	h3 := l.LockShared(6, 9) // disjoint: immediate
	l.Unlock(h3)
	select {
	case <-got:
		t.Fatal("shared overlapping lock granted while exclusive held")
	case <-time.After(30 * time.Millisecond):
	}
	l.Unlock(h)
	<-got
}

func TestRangeLockWriterPreference(t *testing.T) {
	l := NewRangeLock()
	s1 := l.LockShared(0, 10)
	exclGot := make(chan struct{})
	go func() {
		h := l.LockExclusive(3, 3)
		close(exclGot)
		l.Unlock(h)
	}()
	time.Sleep(20 * time.Millisecond) // the exclusive waiter is queued
	sharedGot := make(chan struct{})
	go func() {
		h := l.LockShared(2, 4) // must queue behind the exclusive waiter
		close(sharedGot)
		l.Unlock(h)
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-sharedGot:
		t.Fatal("new shared holder overtook a waiting exclusive")
	default:
	}
	l.Unlock(s1)
	<-exclGot
	<-sharedGot
}

func TestRangeLockStress(t *testing.T) {
	l := NewRangeLock()
	var inExcl [8]atomic.Int32
	var inShared [8]atomic.Int32
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				seg := int64((g + i) % 8)
				if i%5 == 0 {
					h := l.LockExclusive(seg, seg)
					if inExcl[seg].Add(1) != 1 || inShared[seg].Load() != 0 {
						t.Error("exclusive not exclusive")
					}
					inExcl[seg].Add(-1)
					l.Unlock(h)
				} else {
					lo, hi := seg, min(seg+1, 7)
					h := l.LockShared(lo, hi)
					for s := lo; s <= hi; s++ {
						inShared[s].Add(1)
						if inExcl[s].Load() != 0 {
							t.Error("shared while exclusive")
						}
					}
					for s := lo; s <= hi; s++ {
						inShared[s].Add(-1)
					}
					l.Unlock(h)
				}
			}
		})
	}
	wg.Wait()
}
