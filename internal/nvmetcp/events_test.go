package nvmetcp

import (
	"context"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/nvme"
)

// TestInitiatorEvents: the initiator keeps an Asynchronous Event Request
// outstanding and reports ANA changes and reservation notifications
// through Config.OnEvent, also on the association it builds after a
// target restart.
func TestInitiatorEvents(t *testing.T) {
	ctx := context.Background()
	tg := startTarget(t, TargetConfig{})
	nqn, dev := addMalloc(t, tg, "ev", 1<<20, 512)
	addr := tg.Addr().String()
	evs := make(chan Event, 32)
	a := dial(t, tg, Config{SubNQN: nqn, ReconnectTimeout: 10 * time.Second, OnEvent: func(e Event) { evs <- e }})
	defer a.Close()
	b := dial(t, tg, Config{SubNQN: nqn, HostNQN: otherHost})
	defer b.Close()
	next := func(what string, want Event) {
		t.Helper()
		select {
		case e := <-evs:
			if e != want {
				t.Fatalf("%s: event %+v, want %+v", what, e, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event", what)
		}
	}
	ana := func(s uint8) Event { return Event{Kind: EventANAChange, ANAState: s} }

	next("after connect", ana(nvme.ANAOptimized))
	must(t, tg.SetANAState(nqn, nvme.ANAInaccessible))
	next("inaccessible", ana(nvme.ANAInaccessible))
	if s := a.ANAState(); s != nvme.ANAInaccessible {
		t.Fatalf("ANAState %d", s)
	}
	must(t, tg.SetANAState(nqn, nvme.ANAOptimized))
	next("optimized again", ana(nvme.ANAOptimized))

	must(t, a.ReservationRegister(0, 0, 0xA, false))
	must(t, b.ReservationRegister(0, 0, 0xB, false))
	must(t, a.ReservationAcquire(0, nvme.ResvWriteExclusive, 0xA, 0))
	must(t, b.ReservationAcquire(1, nvme.ResvWriteExclusive, 0xB, 0xA))
	next("preempted", Event{Kind: EventReservation, Notice: nvme.ResvNotice{Count: 1, Type: nvme.ResvNoticeRegPreempted, NSID: 1}})

	// A restarted target: the new association posts its own request.
	tg.Close()
	tg2, err := NewTarget(TargetConfig{ListenAddr: addr, Logger: quietLogger()})
	must(t, err)
	defer tg2.Close()
	must(t, tg2.AddSubsystem(SubsystemConfig{NQN: nqn, Device: dev, AllowAnyHost: true}))
	must(t, tg2.Start(ctx))
	// A read sent before the initiator saw the old connection go fails
	// (in flight at the loss); later ones wait for the reconnect.
	for i := 0; ; i++ {
		_, err := a.ReadAt(make([]byte, 512), 0)
		if err == nil {
			break
		}
		if i == 50 {
			t.Fatalf("read after target restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	must(t, tg2.SetANAState(nqn, nvme.ANAInaccessible))
	next("inaccessible after reconnect", ana(nvme.ANAInaccessible))
	select {
	case e := <-evs:
		t.Fatalf("unexpected event %+v", e)
	case <-time.After(100 * time.Millisecond):
	}
}
