package blockdev

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Op is a set of device operations a fault rule applies to.
type Op uint8

// Operations for FaultRule.Ops; combine with |.
const (
	OpRead Op = 1 << iota
	OpWrite
	OpFlush
	OpUnmap
	OpWriteZeroes
	OpAll = OpRead | OpWrite | OpFlush | OpUnmap | OpWriteZeroes
)

const numOps = 5

// FaultRule describes a fault to inject into matching calls.
//
// A call matches when its operation is in Ops, its byte range overlaps
// [Off, Off+Len) (Len 0 matches any range; Flush has no range and matches
// only rules with Len 0), and a draw of the seeded generator falls under
// Rate. The first matching rule acts:
//
//   - Hang: the call blocks until Release, Clear, Remove of the rule, or
//     Close (which fails it with ErrClosed);
//   - Delay: the call sleeps that long;
//   - then, if Err is set, or neither Hang nor Delay is, the call fails
//     with Err (ErrIO when nil) without reaching the device. Otherwise it
//     proceeds to the device.
type FaultRule struct {
	Ops   Op
	Off   int64
	Len   int64
	Rate  float64 // probability per matching call; 0 means 1 (always)
	Count int     // injections before the rule is removed; 0 is unlimited
	Err   error
	Delay time.Duration
	Hang  bool
}

// FaultStats counts injected faults.
type FaultStats struct {
	Errors  int64 // calls failed by a rule
	Delayed int64 // calls delayed by a rule
	Hung    int64 // calls held by a Hang rule (including released ones)
}

// Fault wraps a Device and injects errors, latency and hangs, for testing
// how callers (the nexus) handle failing children. With no rules it passes
// every call through. Safe for concurrent use.
type Fault struct {
	dev Device

	nrules atomic.Int32 // len(mu.rules), for the fast path

	mu struct {
		sync.Mutex // guards the fields below
		rules      []faultEntry
		nextID     int
		rng        *rand.Rand
		release    chan struct{} // closed to release hung calls, then replaced
	}
	closeOnce sync.Once
	closed    chan struct{} // closed by Close

	stats [numOps]struct{ errors, delayed, hung atomic.Int64 }
}

type faultEntry struct {
	id int
	FaultRule
}

var _ Device = (*Fault)(nil)

// NewFault wraps dev. The random generator is seeded with 1; use Seed to
// change it.
func NewFault(dev Device) *Fault {
	f := &Fault{dev: dev, closed: make(chan struct{})}
	f.mu.rng = rand.New(rand.NewPCG(1, 1))
	f.mu.release = make(chan struct{})
	return f
}

// Device returns the wrapped device.
func (f *Fault) Device() Device { return f.dev }

// Seed reseeds the generator used by Rate.
func (f *Fault) Seed(seed uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.rng = rand.New(rand.NewPCG(seed, seed))
}

// Inject adds a rule and returns its id for Remove. Rules are checked in
// the order they were added.
func (f *Fault) Inject(r FaultRule) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.nextID++
	f.mu.rules = append(f.mu.rules, faultEntry{id: f.mu.nextID, FaultRule: r})
	f.nrules.Store(int32(len(f.mu.rules)))
	return f.mu.nextID
}

// Remove deletes the rule with the given id and releases hung calls.
func (f *Fault) Remove(id int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, e := range f.mu.rules {
		if e.id == id {
			f.mu.rules = append(f.mu.rules[:i], f.mu.rules[i+1:]...)
			break
		}
	}
	f.nrules.Store(int32(len(f.mu.rules)))
	f.releaseLocked()
}

// Release lets every currently hung call proceed to the device. Hang rules
// stay in place and hold later calls.
func (f *Fault) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releaseLocked()
}

func (f *Fault) releaseLocked() {
	close(f.mu.release)
	f.mu.release = make(chan struct{})
}

// Clear removes every rule and releases hung calls.
func (f *Fault) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.rules = nil
	f.nrules.Store(0)
	f.releaseLocked()
}

// Stats returns the faults injected so far into the given operations.
func (f *Fault) Stats(ops Op) FaultStats {
	var s FaultStats
	for i := range numOps {
		if ops&(1<<i) != 0 {
			s.Errors += f.stats[i].errors.Load()
			s.Delayed += f.stats[i].delayed.Load()
			s.Hung += f.stats[i].hung.Load()
		}
	}
	return s
}

// match picks the acting rule for a call, updating Count; ok is false when
// none matches. ranged is false for Flush.
func (f *Fault) match(op Op, off, length int64, ranged bool) (r FaultRule, release chan struct{}, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.mu.rules {
		e := &f.mu.rules[i]
		if e.Ops&op == 0 {
			continue
		}
		if e.Len != 0 && (!ranged || off >= e.Off+e.Len || e.Off >= off+max(length, 1)) {
			continue
		}
		if e.Rate > 0 && e.Rate < 1 && f.mu.rng.Float64() >= e.Rate {
			continue
		}
		r = e.FaultRule
		if e.Count > 0 {
			if e.Count--; e.Count == 0 {
				f.mu.rules = append(f.mu.rules[:i], f.mu.rules[i+1:]...)
				f.nrules.Store(int32(len(f.mu.rules)))
			}
		}
		return r, f.mu.release, true
	}
	return r, nil, false
}

// before runs the checks and faults for a call; a non-nil error ends it.
func (f *Fault) before(op Op, off, length int64, ranged bool) error {
	if ranged {
		if err := CheckRange(off, length, f.dev.BlockSize(), f.dev.Size()); err != nil {
			return err
		}
	}
	select {
	case <-f.closed:
		return ErrClosed
	default:
	}
	if f.nrules.Load() == 0 {
		return nil
	}
	r, release, ok := f.match(op, off, length, ranged)
	if !ok {
		return nil
	}
	st := &f.stats[opIndex(op)]
	if r.Hang {
		st.hung.Add(1)
		select {
		case <-release:
		case <-f.closed:
			return ErrClosed
		}
	}
	if r.Delay > 0 {
		st.delayed.Add(1)
		t := time.NewTimer(r.Delay)
		select {
		case <-t.C:
		case <-f.closed:
			t.Stop()
			return ErrClosed
		}
	}
	if r.Err == nil && (r.Hang || r.Delay > 0) {
		return nil
	}
	st.errors.Add(1)
	if r.Err != nil {
		return r.Err
	}
	return fmtErr(ErrIO, off, length, f.dev.BlockSize())
}

func opIndex(op Op) int {
	for i := range numOps {
		if op == 1<<i {
			return i
		}
	}
	panic("blockdev: bad fault op")
}

// ReadAt reads from the device unless a rule intervenes.
func (f *Fault) ReadAt(p []byte, off int64) (int, error) {
	if err := f.before(OpRead, off, int64(len(p)), true); err != nil {
		return 0, err
	}
	return f.dev.ReadAt(p, off)
}

// WriteAt writes to the device unless a rule intervenes.
func (f *Fault) WriteAt(p []byte, off int64) (int, error) {
	if err := f.before(OpWrite, off, int64(len(p)), true); err != nil {
		return 0, err
	}
	return f.dev.WriteAt(p, off)
}

// Flush flushes the device unless a rule intervenes.
func (f *Fault) Flush() error {
	if err := f.before(OpFlush, 0, 0, false); err != nil {
		return err
	}
	return f.dev.Flush()
}

// Unmap unmaps on the device unless a rule intervenes.
func (f *Fault) Unmap(off, length int64) error {
	if err := f.before(OpUnmap, off, length, true); err != nil {
		return err
	}
	return f.dev.Unmap(off, length)
}

// WriteZeroes zeroes on the device unless a rule intervenes.
func (f *Fault) WriteZeroes(off, length int64) error {
	if err := f.before(OpWriteZeroes, off, length, true); err != nil {
		return err
	}
	return f.dev.WriteZeroes(off, length)
}

// Size returns the wrapped device's size.
func (f *Fault) Size() int64 { return f.dev.Size() }

// BlockSize returns the wrapped device's block size.
func (f *Fault) BlockSize() int { return f.dev.BlockSize() }

// Close fails hung and later calls with ErrClosed and closes the wrapped
// device.
func (f *Fault) Close() error {
	first := false
	f.closeOnce.Do(func() { close(f.closed); first = true })
	if !first {
		return ErrClosed
	}
	return f.dev.Close()
}
