package nexus

import (
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/rebuild"
)

func TestPickReaderLeastOutstanding(t *testing.T) {
	ins := []*instance{{}, {}, {}}
	ins[0].outstanding.Store(5)
	ins[1].outstanding.Store(2)
	ins[2].outstanding.Store(3)
	s := &snapshot{healthy: ins}
	for start := range uint32(3) {
		if got := s.pickReader(nil, start); got != ins[1] {
			t.Fatal("not the least busy child")
		}
		if got := s.pickReader([]*instance{ins[1]}, start); got != ins[2] {
			t.Fatal("tried child not skipped")
		}
		if got := s.pickReader(ins, start); got != nil {
			t.Fatal("all tried")
		}
	}
	ins[0].outstanding.Store(0)
	if got := s.pickReader(nil, 0); got != ins[0] {
		t.Fatal("counter change not seen")
	}
	// Equally busy children share reads.
	for _, in := range ins {
		in.outstanding.Store(1)
	}
	seen := map[*instance]bool{}
	for start := range uint32(3) {
		seen[s.pickReader(nil, start)] = true
	}
	if len(seen) != 3 {
		t.Fatal("ties not rotated")
	}
}

// TestReadsAvoidSlowChild: with one child slow, the least-outstanding
// policy sends most concurrent reads to the fast one (round-robin would
// split them evenly).
func TestReadsAvoidSlowChild(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	n := e.newNexus(e.config(cs...))
	slow, fast := e.fault(cs[0]), e.fault(cs[1])
	slow.Inject(blockdev.FaultRule{Ops: blockdev.OpRead, Delay: 50 * time.Millisecond})
	fast.Inject(blockdev.FaultRule{Ops: blockdev.OpRead, Delay: 100 * time.Microsecond})
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			buf := make([]byte, 512)
			for range 20 {
				n.ReadAt(buf, int64(g)*512)
			}
			done <- struct{}{}
		}()
	}
	for range 8 {
		<-done
	}
	s, f := slow.Stats(blockdev.OpRead).Delayed, fast.Stats(blockdev.OpRead).Delayed
	if s+f != 160 || s*2 > f {
		t.Fatalf("slow child got %d reads, fast child %d", s, f)
	}
}

func TestRebuildSourceFailsOver(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(3)
	n := e.newNexus(e.config(cs[:2]...))
	n.WriteAt(fill(5, 1<<20), 1<<20)
	// The first source read fails on child 0: it is faulted and the copy
	// continues from child 1.
	e.fault(cs[0]).Inject(blockdev.FaultRule{Ops: blockdev.OpRead, Count: 1})
	if err := n.AddChild(t.Context(), cs[2]); err != nil {
		t.Fatal(err)
	}
	waitState(t, n, cs[2], ChildOpen, 5*time.Second)
	if childState(n, cs[0]).State != ChildFaulted {
		t.Fatalf("%+v", n.Children())
	}
	if e.sum(cs[1], n.Size()) != e.sum(cs[2], n.Size()) {
		t.Fatal("differ")
	}
}

func TestRebuildDestinationFailure(t *testing.T) {
	e := newEnv(t, 4<<20)
	cs := uris(2)
	cfg := e.config(cs[0])
	cfg.RebuildRate = 1 << 20 // the failure hits while the copy runs
	n := e.newNexus(cfg)
	n.WriteAt(fill(5, 1<<20), 0)
	if err := n.AddChild(t.Context(), cs[1]); err != nil {
		t.Fatal(err)
	}
	// Fail the destination's next write (the copy or a client write).
	e.fault(cs[1]).Inject(blockdev.FaultRule{Ops: blockdev.OpWrite | blockdev.OpWriteZeroes, Count: 1})
	n.WriteAt(fill(6, 512), 0)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if st := childState(n, cs[1]); st.State == ChildFaulted || st.State == ChildOpen {
			break
		}
		time.Sleep(time.Millisecond)
	}
	st := childState(n, cs[1])
	if e.fault(cs[1]).Stats(blockdev.OpWrite|blockdev.OpWriteZeroes).Errors > 0 && st.State != ChildFaulted {
		t.Fatalf("destination failed but child is %+v", st)
	}
	if st.State == ChildFaulted {
		for i := 0; i < 1000 && len(n.RebuildHistory()) == 0; i++ {
			time.Sleep(time.Millisecond) // the job's end is recorded asynchronously
		}
		h := n.RebuildHistory()
		if len(h) != 1 || h[0].State == rebuild.Completed {
			t.Fatalf("history %+v", h)
		}
	}
	if n.State() == Faulted {
		t.Fatal("nexus faulted by a rebuild destination failure")
	}
}
