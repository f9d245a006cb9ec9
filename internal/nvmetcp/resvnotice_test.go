package nvmetcp

import (
	"context"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

const thirdHost = "nqn.2014-08.org.nvmexpress:uuid:99999999-3333-3333-4444-555555555555"

// TestReservationNotices: three hosts share a namespace. Releasing a
// registrants-only reservation notifies the other registrants, a preempt
// notifies the host whose registration it removed, a clear notifies every
// other registrant unless it masked the type. Each host's initiator learns
// of them through its Asynchronous Event Request (Config.OnEvent).
func TestReservationNotices(t *testing.T) {
	ctx := context.Background()
	tg := startTarget(t, TargetConfig{})
	dev, _ := blockdev.NewMalloc("rn", 1<<20, 512)
	if err := tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("rn"), Device: dev, AllowAnyHost: true}); err != nil {
		t.Fatal(err)
	}
	var hosts []*Device
	events := map[*Device]chan nvme.ResvNotice{}
	for _, h := range []string{testHost, otherHost, thirdHost} {
		ch := make(chan nvme.ResvNotice, 16)
		d := dial(t, tg, Config{SubNQN: NQNFor("rn"), HostNQN: h, OnEvent: func(e Event) {
			if e.Kind == EventReservation {
				ch <- e.Notice
			}
		}})
		defer d.Close()
		hosts = append(hosts, d)
		events[d] = ch
	}
	a, b, c := hosts[0], hosts[1], hosts[2]
	expect := func(name string, d *Device, want ...nvme.ResvNotice) {
		t.Helper()
		for i := range want {
			select {
			case got := <-events[d]:
				if got != want[i] {
					t.Fatalf("%s: notice %d %+v, want %+v", name, i, got, want[i])
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: notice %d (%+v) never came", name, i, want[i])
			}
		}
		select {
		case got := <-events[d]:
			t.Fatalf("%s: unexpected notice %+v", name, got)
		case <-time.After(50 * time.Millisecond):
		}
	}
	registerAll := func() {
		t.Helper()
		for i, d := range hosts {
			must(t, d.ReservationRegister(0, 0, uint64(0xA+i), false))
		}
	}

	registerAll()
	expect("nothing yet", a)
	must(t, a.ReservationAcquire(0, nvme.ResvWriteExclusiveRegOnly, 0xA, 0))
	must(t, a.ReservationRelease(0, nvme.ResvWriteExclusiveRegOnly, 0xA))
	released := nvme.ResvNotice{Count: 1, Type: nvme.ResvNoticeReleased, NSID: 1}
	expect("releaser", a)
	expect("B after release", b, released)
	expect("C after release", c, released)

	// Write Exclusive (not registrants-only): a release notifies nobody.
	must(t, a.ReservationAcquire(0, nvme.ResvWriteExclusive, 0xA, 0))
	must(t, a.ReservationRelease(0, nvme.ResvWriteExclusive, 0xA))
	expect("B after WE release", b)

	// B preempts A: only A is told, and A's next write conflicts.
	must(t, a.ReservationAcquire(0, nvme.ResvWriteExclusiveRegOnly, 0xA, 0))
	must(t, b.ReservationAcquire(1, nvme.ResvWriteExclusive, 0xB, 0xA))
	expect("A preempted", a, nvme.ResvNotice{Count: 1, Type: nvme.ResvNoticeRegPreempted, NSID: 1})
	expect("C after preempt", c)
	if _, err := a.WriteAt(make([]byte, 512), 0); !isConflict(err) {
		t.Fatalf("write from the preempted host: %v", err)
	}

	// C masks "reservation preempted"; B clears: A (registered again) is
	// told, C is not.
	must(t, a.ReservationRegister(0, 0, 0xA, false))
	must(t, c.SetReservationNoticeMask(ctx, 1<<nvme.ResvNoticePreempted))
	must(t, b.ReservationRelease(1, 0, 0xB))
	expect("A after clear", a, nvme.ResvNotice{Count: 2, Type: nvme.ResvNoticePreempted, NSID: 1})
	expect("C masked", c)
	expect("clearer", b)

	// Two in a row: both arrive, in order (whether the first event finds
	// one page or two).
	must(t, c.SetReservationNoticeMask(ctx, 0))
	registerAll()
	must(t, b.ReservationAcquire(0, nvme.ResvExclusiveAccessAllReg, 0xB, 0))
	must(t, b.ReservationRelease(0, nvme.ResvExclusiveAccessAllReg, 0xB))
	must(t, b.ReservationRelease(1, 0, 0xB))
	got := []nvme.ResvNotice{<-events[c], <-events[c]}
	for i, want := range []nvme.ResvNotice{{Count: 2, Type: nvme.ResvNoticeReleased, NSID: 1}, {Count: 3, Type: nvme.ResvNoticePreempted, NSID: 1}} {
		got[i].Available = 0 // depends on how many the event found waiting
		if got[i] != want {
			t.Fatalf("C two in a row: notice %d %+v, want %+v", i, got[i], want)
		}
	}
}

// TestReservationNoticeLog drives one controller: the mask feature, the
// log's bound (lost notifications leave a gap in Count), and the event,
// posted once until the log is read without RAE.
func TestReservationNoticeLog(t *testing.T) {
	tg := newStateTarget(t, TargetConfig{})
	c := enabled(t, tg, NQNFor("s"))
	aen := nvme.AENResult(nvme.AENTypeIOCmdSpec, nvme.AENResvLogAvail, nvme.LogResvNotice)
	logPage := func(rae bool) nvme.ResvNotice {
		t.Helper()
		var sq nvme.SQE
		sq.Opcode = nvme.AdminGetLogPage
		sq.SetLogPage(nvme.LogResvNotice, 0, rae, nvme.ResvNoticeLen, 0)
		s := admin(c, sq, nvme.ResvNoticeLen)
		if !s.status.OK() {
			t.Fatal(s.status)
		}
		n, err := nvme.UnmarshalResvNotice(s.buf)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	pending := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := 0
		for _, p := range c.pending {
			if p == aen {
				n++
			}
		}
		c.pending = nil
		return n
	}

	for _, tc := range []struct {
		name   string
		nsid   uint32
		status nvme.Status
	}{{"nsid 1", 1, nvme.StatusSuccess}, {"all namespaces", 0xFFFFFFFF, nvme.StatusSuccess},
		{"nsid 2", 2, nvme.StatusInvalidNamespace | nvme.StatusDNR}, {"nsid 0", 0, nvme.StatusInvalidNamespace | nvme.StatusDNR}} {
		s := admin(c, nvme.SQE{Opcode: nvme.AdminSetFeatures, NSID: tc.nsid, CDW10: uint32(nvme.FeatResvMask), CDW11: 0xFF}, 0)
		if s.status != tc.status {
			t.Fatalf("set mask %s: %v, want %v", tc.name, s.status, tc.status)
		}
	}
	s := admin(c, nvme.SQE{Opcode: nvme.AdminGetFeatures, NSID: 1, CDW10: uint32(nvme.FeatResvMask)}, 0)
	if !s.status.OK() || s.dw0 != nvme.ResvNoticeMaskAll {
		t.Fatalf("get mask: %v %#x", s.status, s.dw0)
	}
	c.notifyResv(nvme.ResvNoticeReleased)
	if n := logPage(false); n.Count != 0 || pending() != 0 {
		t.Fatalf("masked notification logged: %+v", n)
	}
	admin(c, nvme.SQE{Opcode: nvme.AdminSetFeatures, NSID: 1, CDW10: uint32(nvme.FeatResvMask)}, 0)

	for range resvLogMax + 6 {
		c.notifyResv(nvme.ResvNoticeRegPreempted)
	}
	if n := pending(); n != 1 {
		t.Fatalf("%d events for one unread log", n)
	}
	for i := range resvLogMax {
		n := logPage(true)
		want := nvme.ResvNotice{Count: uint64(i + 1), Type: nvme.ResvNoticeRegPreempted, NSID: 1, Available: uint8(resvLogMax - 1 - i)}
		if n != want {
			t.Fatalf("page %d: %+v, want %+v", i, n, want)
		}
	}
	if n := logPage(true); n.Count != 0 {
		t.Fatalf("log not empty: %+v", n)
	}
	c.notifyResv(nvme.ResvNoticeReleased)
	if n := pending(); n != 0 {
		t.Fatal("event posted again while RAE kept it")
	}
	if n := logPage(false); n.Count != resvLogMax+7 {
		t.Fatalf("count after %d lost: %+v", 6, n)
	}
	c.notifyResv(nvme.ResvNoticeReleased)
	if n := pending(); n != 1 {
		t.Fatal("no event after the log was read without RAE")
	}
	// A read at an offset shows the page without taking it.
	var sq nvme.SQE
	sq.Opcode = nvme.AdminGetLogPage
	sq.SetLogPage(nvme.LogResvNotice, 0, true, 8, 8)
	if s := admin(c, sq, 8); !s.status.OK() || s.buf[0] != nvme.ResvNoticeReleased {
		t.Fatalf("offset read: %v %x", s.status, s.buf)
	}
	if n := logPage(false); n.Type != nvme.ResvNoticeReleased {
		t.Fatalf("offset read took the page: %+v", n)
	}
}
