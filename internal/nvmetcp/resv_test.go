package nvmetcp

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

const otherHost = "nqn.2014-08.org.nvmexpress:uuid:99999999-2222-3333-4444-555555555555"

func isConflict(err error) bool {
	var st nvme.Status
	return errors.As(err, &st) && st.Code() == nvme.StatusReservationConflict
}

// TestReservationsPersistAcrossRestart: host A registers and takes a Write
// Exclusive reservation; host B may read but not write; the state survives
// a target restart (StateDir) and B still cannot write until A releases.
func TestReservationsPersistAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	dev, _ := blockdev.NewMalloc("r", 4<<20, 512)
	start := func() *Target {
		tg := startTarget(t, TargetConfig{StateDir: dir})
		if err := tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("r"), Device: dev, AllowAnyHost: true}); err != nil {
			t.Fatal(err)
		}
		return tg
	}
	tg := start()
	a := dial(t, tg, Config{SubNQN: NQNFor("r"), HostNQN: testHost})
	b := dial(t, tg, Config{SubNQN: NQNFor("r"), HostNQN: otherHost})
	buf := make([]byte, 4096)
	must(t, a.ReservationRegister(0, 0, 0xA, false))
	must(t, b.ReservationRegister(0, 0, 0xB, false))
	if err := b.ReservationRegister(0, 0, 0xC, false); !isConflict(err) {
		t.Fatalf("re-register with another key: %v", err)
	}
	if err := a.ReservationAcquire(0, nvme.ResvWriteExclusive, 0xBAD, 0); !isConflict(err) {
		t.Fatalf("acquire with wrong key: %v", err)
	}
	must(t, a.ReservationAcquire(0, nvme.ResvWriteExclusive, 0xA, 0))
	if err := b.ReservationAcquire(0, nvme.ResvWriteExclusive, 0xB, 0); !isConflict(err) {
		t.Fatalf("second acquire: %v", err)
	}
	if _, err := b.WriteAt(buf, 0); !isConflict(err) || !errors.Is(err, blockdev.ErrIO) {
		t.Fatalf("write from non-holder: %v", err)
	}
	if _, err := b.ReadAt(buf, 0); err != nil {
		t.Fatalf("read from non-holder under WE: %v", err)
	}
	if _, err := a.WriteAt(buf, 0); err != nil {
		t.Fatalf("write from holder: %v", err)
	}
	rs, err := b.ReservationReport()
	must(t, err)
	if rs.Type != nvme.ResvWriteExclusive || len(rs.Registrants) != 2 || !rs.PTPL {
		t.Fatalf("report %+v", rs)
	}
	a.Close()
	b.Close()
	tg.Close()
	if _, err := os.Stat(filepath.Join(dir, "resv-nqn.2019-05.io.kura_r.json")); err != nil {
		t.Fatalf("state file: %v", err)
	}

	tg = start()
	b = dial(t, tg, Config{SubNQN: NQNFor("r"), HostNQN: otherHost})
	defer b.Close()
	if _, err := b.WriteAt(buf, 0); !isConflict(err) {
		t.Fatalf("after restart, write from non-holder: %v", err)
	}
	rs2, err := b.ReservationReport()
	must(t, err)
	if rs2.Generation != rs.Generation || rs2.Type != rs.Type || len(rs2.Registrants) != 2 {
		t.Fatalf("after restart %+v, before %+v", rs2, rs)
	}
	// B preempts A's registration and takes the reservation over.
	must(t, b.ReservationAcquire(1, nvme.ResvExclusiveAccess, 0xB, 0xA))
	if _, err := b.WriteAt(buf, 0); err != nil {
		t.Fatalf("write after preempt: %v", err)
	}
	a = dial(t, tg, Config{SubNQN: NQNFor("r"), HostNQN: testHost})
	defer a.Close()
	if _, err := a.ReadAt(buf, 0); !isConflict(err) {
		t.Fatalf("read from preempted host under EA: %v", err)
	}
	must(t, b.ReservationRelease(0, nvme.ResvExclusiveAccess, 0xB))
	if _, err := a.WriteAt(buf, 0); err != nil {
		t.Fatalf("write after release: %v", err)
	}
}

func TestReservationAccessTable(t *testing.T) {
	h, r, o := [16]byte{1}, [16]byte{2}, [16]byte{3} // holder, registrant, other
	type access struct{ read, write bool }
	cases := []struct {
		rtype               uint8
		holder, reg, nonReg access
	}{
		{nvme.ResvWriteExclusive, access{true, true}, access{true, false}, access{true, false}},
		{nvme.ResvExclusiveAccess, access{true, true}, access{false, false}, access{false, false}},
		{nvme.ResvWriteExclusiveRegOnly, access{true, true}, access{true, true}, access{true, false}},
		{nvme.ResvExclusiveAccessRegOnly, access{true, true}, access{true, true}, access{false, false}},
		{nvme.ResvWriteExclusiveAllReg, access{true, true}, access{true, true}, access{true, false}},
		{nvme.ResvExclusiveAccessAllReg, access{true, true}, access{true, true}, access{false, false}},
	}
	for _, c := range cases {
		rs := &reservations{regs: map[[16]byte]uint64{h: 1, r: 2}, holder: h, rtype: c.rtype}
		rs.active.Store(true)
		for _, who := range []struct {
			id   [16]byte
			want access
		}{{h, c.holder}, {r, c.reg}, {o, c.nonReg}} {
			if got := (access{rs.allowed(who.id, false), rs.allowed(who.id, true)}); got != who.want {
				t.Errorf("rtype %d host %d: got %+v want %+v", c.rtype, who.id[0], got, who.want)
			}
		}
	}
}
