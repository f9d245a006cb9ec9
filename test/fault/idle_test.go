package fault_test

import (
	"testing"
	"time"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// TestRemoteReplicaKilledWhileIdle kills engine B while no command is in
// flight on its NVMe/TCP connections, then writes one block through the
// nexus. The write must succeed (the remote child is faulted and the local
// one takes it) and the acknowledged data must read back. It measures how
// long that first write stalls: the initiator sees the connection drop at
// once and waits for a reconnect, so the nexus child timeout
// (--child-timeout) is what bounds the stall before the child is faulted.
func TestRemoteReplicaKilledWhileIdle(t *testing.T) {
	c := newCluster(t)
	m := newModel()
	conn, err := dialNBD(c.a.nbd, "vol", opTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, blockSize)
	write := func(blk int) time.Duration {
		t.Helper()
		gen := m.next.Add(1)
		fillBlock(buf, uint64(blk), gen)
		t0 := time.Now()
		if err := conn.WriteAt(buf, int64(blk)*blockSize); err != nil {
			t.Fatalf("write of block %d: %v", blk, err)
		}
		d := time.Since(t0)
		m.gen[blk] = gen
		return d
	}
	write(1)
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	c.b.kill()
	time.Sleep(500 * time.Millisecond) // the initiator has seen the connection go
	stall := write(2)
	n := waitNexus(t, c.nex, "degraded with the remote child faulted", 10*time.Second, func(n *enginev1.Nexus) bool {
		return n.GetState() == enginev1.NexusState_NEXUS_STATE_DEGRADED &&
			childState(n, c.remote) == enginev1.ChildState_CHILD_STATE_FAULTED
	})
	t.Logf("first write after B died while idle took %v; remote child: %q", stall.Round(time.Millisecond), childReason(n, c.remote))
	if stall > maxStall {
		t.Fatalf("the write stalled %v, beyond the child timeout bound %v", stall, maxStall)
	}
	if d := write(3); d > time.Second {
		t.Fatalf("a write on the degraded nexus took %v", d)
	}
	m.verifyExport(t, c.a.nbd, "vol", "nexus, degraded")
}
