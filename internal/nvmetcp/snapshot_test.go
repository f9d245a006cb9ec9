package nvmetcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// fakeSnaps is a SnapshotHook keeping snapshots in a map, idempotent like
// pool.CreateSnapshot.
type fakeSnaps struct {
	mu    sync.Mutex
	snaps map[string]SnapshotInfo // by name
	calls int
	// foreign holds UUIDs of snapshots of other volumes in the same pool:
	// not visible through this namespace, never destroyed through it.
	foreign map[string]bool
	cloned  map[string]bool // UUIDs of snapshots that clones depend on
}

func (f *fakeSnaps) CreateSnapshot(_ context.Context, name, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.snaps == nil {
		f.snaps = map[string]SnapshotInfo{}
	}
	if s, ok := f.snaps[name]; ok {
		if id == "" || s.UUID == id {
			return nil
		}
		return fmt.Errorf("%w: name %q", ErrSnapshotExists, name)
	}
	if id == "" {
		id = uuid.NewString()
	}
	for _, s := range f.snaps {
		if s.UUID == id {
			return fmt.Errorf("%w: uuid %s", ErrSnapshotExists, id)
		}
	}
	if name == "nospace" {
		return fmt.Errorf("pool full: %w", blockdev.ErrNoSpace)
	}
	f.snaps[name] = SnapshotInfo{Pool: "p", Name: name, UUID: id, Source: "r", Size: 1 << 20, Referenced: 4096,
		Created: time.Unix(0, 1700000000123456789)}
	return nil
}

func (f *fakeSnaps) SnapshotInfo(_ context.Context, id string) (SnapshotInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.snaps {
		if s.UUID == id {
			return s, nil
		}
	}
	return SnapshotInfo{}, fmt.Errorf("%w: %s", ErrSnapshotNotFound, id)
}

func (f *fakeSnaps) DestroySnapshot(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	for name, s := range f.snaps {
		if s.UUID != id {
			continue
		}
		if f.cloned[id] {
			return fmt.Errorf("%w: clones depend on %s", ErrSnapshotHasDependents, name)
		}
		delete(f.snaps, name)
		return nil
	}
	return fmt.Errorf("%w: %s", ErrSnapshotNotFound, id)
}

func (f *fakeSnaps) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.snaps {
		if s.UUID == id {
			return true
		}
	}
	return false
}

func (f *fakeSnaps) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.snaps)
}

func addSnapMalloc(t *testing.T, tg *Target, name string, hook SnapshotHook, hosts ...string) string {
	t.Helper()
	dev, err := blockdev.NewMalloc(name, 1<<20, 512)
	if err != nil {
		t.Fatal(err)
	}
	cfg := SubsystemConfig{NQN: NQNFor(name), Device: dev, AllowedHosts: hosts, AllowAnyHost: len(hosts) == 0, Snapshots: hook}
	if err := tg.AddSubsystem(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.NQN
}

func TestSnapshotCmdDecode(t *testing.T) {
	id := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	good, err := EncodeSnapshotCmd("snap-1", id)
	if err != nil {
		t.Fatal(err)
	}
	if name, got, err := DecodeSnapshotCmd(good); err != nil || name != "snap-1" || got != id {
		t.Fatalf("round trip: %q %x %v", name, got, err)
	}
	long := strings.Repeat("x", MaxSnapshotName)
	if b, err := EncodeSnapshotCmd(long, [16]byte{}); err != nil || len(b) != maxSnapCmd {
		t.Fatalf("longest name: %d %v", len(b), err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty":            nil,
		"header only":      good[:snapCmdHeader],
		"truncated name":   good[:len(good)-1],
		"trailing byte":    append(bytes.Clone(good), 'x'),
		"too long":         make([]byte, maxSnapCmd+1),
		"version 0":        mod(func(b []byte) []byte { b[0] = 0; return b }),
		"version 2":        mod(func(b []byte) []byte { b[0] = 2; return b }),
		"reserved":         mod(func(b []byte) []byte { b[3] = 1; return b }),
		"length 0":         mod(func(b []byte) []byte { b[1] = 0; return b[:snapCmdHeader] }),
		"length too large": mod(func(b []byte) []byte { b[1] = 200; return b }),
		"NUL in name":      mod(func(b []byte) []byte { b[snapCmdHeader+2] = 0; return b }),
		"newline in name":  mod(func(b []byte) []byte { b[snapCmdHeader] = '\n'; return b }),
		"DEL in name":      mod(func(b []byte) []byte { b[snapCmdHeader] = 0x7f; return b }),
		"invalid UTF-8":    mod(func(b []byte) []byte { b[snapCmdHeader+1] = 0xff; return b }),
	}
	for name, b := range cases {
		if _, _, err := DecodeSnapshotCmd(b); !errors.Is(err, ErrSnapshotInvalid) {
			t.Errorf("%s: %v, want ErrSnapshotInvalid", name, err)
		}
	}
	for _, bad := range []string{"", long + "y", "a\x00b", "tab\there"} {
		if _, err := EncodeSnapshotCmd(bad, id); !errors.Is(err, ErrSnapshotInvalid) {
			t.Errorf("encode %q: %v", bad, err)
		}
	}
}

// FuzzDecodeSnapshotCmd: the decoder never panics, and what it accepts
// re-encodes to the same bytes.
func FuzzDecodeSnapshotCmd(f *testing.F) {
	b, _ := EncodeSnapshotCmd("snap", [16]byte{1})
	f.Add(b)
	f.Add([]byte{1, 1, 0, 0})
	f.Add(make([]byte, snapCmdHeader+1))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, id, err := DecodeSnapshotCmd(b)
		if err != nil {
			return
		}
		again, err := EncodeSnapshotCmd(name, id)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted %x but re-encodes to %x (%v)", b, again, err)
		}
	})
}

func TestSnapshotInfoPage(t *testing.T) {
	si := SnapshotInfo{Pool: "pool", Name: "snap", UUID: uuid.NewString(), Source: "rep", Size: 1 << 30,
		Referenced: 12345, Exclusive: 678, Created: time.Unix(0, 42)}
	b := make([]byte, SnapshotInfoSize)
	if err := marshalSnapshotInfo(b, si); err != nil {
		t.Fatal(err)
	}
	got, err := unmarshalSnapshotInfo(b)
	if err != nil || got.Pool != si.Pool || got.Name != si.Name || got.UUID != si.UUID || got.Source != si.Source ||
		got.Size != si.Size || got.Referenced != si.Referenced || got.Exclusive != si.Exclusive || !got.Created.Equal(si.Created) {
		t.Fatalf("round trip %+v %v", got, err)
	}
	if err := marshalSnapshotInfo(b, SnapshotInfo{Name: strings.Repeat("n", 256)}); err == nil {
		t.Fatal("name over 255 bytes accepted")
	}
	if _, err := unmarshalSnapshotInfo(b[:100]); err == nil {
		t.Fatal("short page accepted")
	}
}

// TestSnapshotCmdState drives the admin command without sockets: the
// statuses of every refusal and that nothing is created by them.
func TestSnapshotCmdState(t *testing.T) {
	tg := newStateTarget(t, TargetConfig{})
	hook := &fakeSnaps{}
	addSnapMalloc(t, tg, "snap", hook)
	addSnapMalloc(t, tg, "plain", nil)
	c := enabled(t, tg, NQNFor("snap"))
	plain := enabled(t, tg, NQNFor("plain"))
	good, _ := EncodeSnapshotCmd("s1", [16]byte{9})
	run := func(c *controller, sqe nvme.SQE, data []byte) nvme.Status {
		s := testSlot(sqe, bytes.Clone(data), 0)
		c.execAdmin(s)
		return s.status
	}
	create := nvme.SQE{Opcode: OpcodeCreateSnapshot, NSID: 1}
	destroy := DestroySnapshotSQE([16]byte{9})
	destroyWith := func(f func(*nvme.SQE)) nvme.SQE { sqe := destroy; f(&sqe); return sqe }
	badVersion := bytes.Clone(good)
	badVersion[0] = 7
	for _, tc := range []struct {
		name string
		c    *controller
		sqe  nvme.SQE
		data []byte
		want nvme.Status
	}{
		{"no hook", plain, create, good, nvme.StatusInvalidOpcode | nvme.StatusDNR},
		{"nsid 2", c, nvme.SQE{Opcode: OpcodeCreateSnapshot, NSID: 2}, good, nvme.StatusInvalidNamespace | nvme.StatusDNR},
		{"no data", c, create, nil, nvme.StatusSGLInvalidLength | nvme.StatusDNR},
		{"oversized data", c, create, make([]byte, 4096), nvme.StatusSGLInvalidLength | nvme.StatusDNR},
		{"bad version", c, create, badVersion, nvme.StatusInvalidField | nvme.StatusDNR},
		{"info without uuid", c, nvme.SQE{Opcode: OpcodeSnapshotInfo, NSID: 1}, make([]byte, SnapshotInfoSize), nvme.StatusInvalidField | nvme.StatusDNR},
		{"destroy, no hook", plain, destroy, nil, nvme.StatusInvalidOpcode | nvme.StatusDNR},
		{"destroy, nsid 0", c, destroyWith(func(q *nvme.SQE) { q.NSID = 0 }), nil, nvme.StatusInvalidNamespace | nvme.StatusDNR},
		{"destroy, nsid 2", c, destroyWith(func(q *nvme.SQE) { q.NSID = 2 }), nil, nvme.StatusInvalidNamespace | nvme.StatusDNR},
		{"destroy, broadcast nsid", c, destroyWith(func(q *nvme.SQE) { q.NSID = 0xFFFFFFFF }), nil, nvme.StatusInvalidNamespace | nvme.StatusDNR},
		{"destroy with data", c, destroy, make([]byte, 16), nvme.StatusSGLInvalidLength | nvme.StatusDNR},
		{"destroy without uuid", c, nvme.SQE{Opcode: OpcodeDestroySnapshot, NSID: 1}, nil, nvme.StatusInvalidField | nvme.StatusDNR},
		{"destroy, CDW14 set", c, destroyWith(func(q *nvme.SQE) { q.CDW14 = 1 }), nil, nvme.StatusInvalidField | nvme.StatusDNR},
		{"destroy, CDW15 set", c, destroyWith(func(q *nvme.SQE) { q.CDW15 = 1 << 31 }), nil, nvme.StatusInvalidField | nvme.StatusDNR},
	} {
		if st := run(tc.c, tc.sqe, tc.data); st != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, st, tc.want)
		}
	}
	if hook.calls != 0 {
		t.Fatalf("refused commands reached the hook %d times", hook.calls)
	}
	if st := run(c, create, good); !st.OK() {
		t.Fatalf("create: %v", st)
	}
	if st := run(c, create, good); !st.OK() {
		t.Fatalf("create again (idempotent): %v", st)
	}
	other, _ := EncodeSnapshotCmd("s1", [16]byte{8})
	if st := run(c, create, other); st != StatusSnapshotExists|nvme.StatusDNR {
		t.Fatalf("name collision: %v", st)
	}
	ns, _ := EncodeSnapshotCmd("nospace", [16]byte{})
	if st := run(c, create, ns); st != nvme.StatusCapExceeded|nvme.StatusDNR {
		t.Fatalf("no space: %v", st)
	}
	if hook.count() != 1 {
		t.Fatalf("%d snapshots, want 1", hook.count())
	}
	if st := run(c, destroy, nil); !st.OK() {
		t.Fatalf("destroy: %v", st)
	}
	if st := run(c, destroy, nil); st != StatusSnapshotNotFound|nvme.StatusDNR {
		t.Fatalf("destroy again: %v, want Snapshot Not Found", st)
	}
	if hook.count() != 0 {
		t.Fatalf("%d snapshots after destroy, want 0", hook.count())
	}
	// Effects log lists the vendor commands only where they work.
	for _, tc := range []struct {
		c    *controller
		want uint32
	}{{c, nvme.EffectsCSUPP}, {plain, 0}} {
		s := admin(tc.c, nvme.SQE{Opcode: nvme.AdminGetLogPage, CDW10: uint32(nvme.LogCmdEffects) | (4096/4-1)<<16}, 4096)
		if !s.status.OK() {
			t.Fatal(s.status)
		}
		for _, op := range []uint8{OpcodeCreateSnapshot, OpcodeSnapshotInfo, OpcodeDestroySnapshot} {
			if got := binary.LittleEndian.Uint32(s.buf[4*int(op):]); got != tc.want {
				t.Errorf("effects of %#x: %#x, want %#x", op, got, tc.want)
			}
		}
	}
}

func TestSnapshotOverLoopback(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	hook := &fakeSnaps{}
	nqn := addSnapMalloc(t, tg, "vol", hook, testHost, otherHost)
	plainNQN := addSnapMalloc(t, tg, "plain", nil)
	ctx := context.Background()
	d := dial(t, tg, Config{SubNQN: nqn})
	defer d.Close()
	id := uuid.NewString()
	must(t, d.CreateSnapshot(ctx, "s1", id))
	must(t, d.CreateSnapshot(ctx, "s1", id)) // idempotent
	si, err := d.SnapshotInfo(ctx, id)
	if err != nil || si.Name != "s1" || si.Pool != "p" || si.UUID != id || si.Size != 1<<20 || si.Created.UnixNano() != 1700000000123456789 {
		t.Fatalf("info %+v %v", si, err)
	}
	if _, err := d.SnapshotInfo(ctx, uuid.NewString()); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("info of unknown uuid: %v", err)
	}
	if err := d.CreateSnapshot(ctx, "s1", uuid.NewString()); !errors.Is(err, ErrSnapshotExists) {
		t.Fatalf("name collision: %v", err)
	}
	if err := d.CreateSnapshot(ctx, "bad\nname", ""); !errors.Is(err, ErrSnapshotInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	// The data also arrives through R2T (no in-capsule data).
	d.mu.Lock()
	d.admin.icdMax = 0
	d.mu.Unlock()
	must(t, d.CreateSnapshot(ctx, "s2", ""))
	if hook.count() != 2 {
		t.Fatalf("%d snapshots, want 2", hook.count())
	}

	// A host that may not write (another host holds Write Exclusive) may
	// not snapshot either.
	o := dial(t, tg, Config{SubNQN: nqn, HostNQN: otherHost})
	defer o.Close()
	must(t, d.ReservationRegister(0, 0, 0xA, false))
	must(t, d.ReservationAcquire(0, nvme.ResvWriteExclusive, 0xA, 0))
	if err := o.CreateSnapshot(ctx, "s3", ""); !errors.Is(err, ErrSnapshotDenied) {
		t.Fatalf("snapshot by a host that may not write: %v", err)
	}
	must(t, d.CreateSnapshot(ctx, "s3", "")) // the holder may
	if hook.count() != 3 {
		t.Fatalf("%d snapshots, want 3", hook.count())
	}

	// An export without a hook (e.g. a nexus or bdev) refuses.
	p := dial(t, tg, Config{SubNQN: plainNQN})
	defer p.Close()
	if err := p.CreateSnapshot(ctx, "x", ""); !errors.Is(err, ErrSnapshotUnsupported) {
		t.Fatalf("export without hook: %v", err)
	}
	// The connection is still good after the refusals.
	buf := make([]byte, 4096)
	if _, err := p.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	must(t, d.Close())
	if err := d.CreateSnapshot(ctx, "late", ""); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestDestroySnapshotSQEDecode(t *testing.T) {
	id := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	good := DestroySnapshotSQE(id)
	if good.Opcode != OpcodeDestroySnapshot || good.NSID != 1 || nvme.Direction(good.Opcode) != nvme.DirNone {
		t.Fatalf("sqe %+v", good)
	}
	if got, err := DecodeDestroySnapshotSQE(&good); err != nil || got != id {
		t.Fatalf("round trip: %x %v", got, err)
	}
	if good.CDW10 != 0x04030201 || good.CDW13 != 0x100f0e0d {
		t.Fatalf("uuid byte order: CDW10 %#x CDW13 %#x", good.CDW10, good.CDW13)
	}
	mod := func(f func(q *nvme.SQE)) nvme.SQE { q := good; f(&q); return q }
	for name, sqe := range map[string]nvme.SQE{
		"zero uuid":    {Opcode: OpcodeDestroySnapshot, NSID: 1},
		"CDW14":        mod(func(q *nvme.SQE) { q.CDW14 = 0xdead }),
		"CDW15":        mod(func(q *nvme.SQE) { q.CDW15 = 1 }),
		"zero + CDW15": {Opcode: OpcodeDestroySnapshot, NSID: 1, CDW15: 1},
	} {
		if _, err := DecodeDestroySnapshotSQE(&sqe); !errors.Is(err, ErrSnapshotInvalid) {
			t.Errorf("%s: %v, want ErrSnapshotInvalid", name, err)
		}
	}
}

// TestDestroySnapshotOverLoopback: Destroy Snapshot over a real
// connection: success, a repeat answered Not Found, refusals (another
// volume's snapshot, clone dependents, a host that may not write,
// malformed commands, an export without a hook) that destroy nothing.
func TestDestroySnapshotOverLoopback(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	foreign := uuid.NewString()
	hook := &fakeSnaps{foreign: map[string]bool{foreign: true}, cloned: map[string]bool{}}
	nqn := addSnapMalloc(t, tg, "vol", hook, testHost, otherHost)
	plainNQN := addSnapMalloc(t, tg, "plain", nil)
	ctx := context.Background()
	d := dial(t, tg, Config{SubNQN: nqn})
	defer d.Close()

	id := uuid.NewString()
	must(t, d.CreateSnapshot(ctx, "s1", id))
	must(t, d.DestroySnapshot(ctx, id))
	if hook.has(id) {
		t.Fatal("snapshot still there after destroy")
	}
	if _, err := d.SnapshotInfo(ctx, id); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("info after destroy: %v", err)
	}
	// Idempotence: a repeat (or a UUID never taken) is Not Found, which a
	// caller that only wants it gone treats as done.
	if err := d.DestroySnapshot(ctx, id); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("destroy again: %v, want ErrSnapshotNotFound", err)
	}
	// Another volume's snapshot is not this namespace's: Not Found, kept.
	if err := d.DestroySnapshot(ctx, foreign); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("another volume's snapshot: %v", err)
	}
	if !hook.foreign[foreign] {
		t.Fatal("foreign snapshot touched")
	}

	// Clone dependents: refused with its own status, never forced.
	cl := uuid.NewString()
	must(t, d.CreateSnapshot(ctx, "s2", cl))
	hook.mu.Lock()
	hook.cloned[cl] = true
	hook.mu.Unlock()
	err := d.DestroySnapshot(ctx, cl)
	if !errors.Is(err, ErrSnapshotHasDependents) || !hook.has(cl) {
		t.Fatalf("snapshot with clones: %v (still there: %v)", err, hook.has(cl))
	}
	var st nvme.Status
	if !errors.As(err, &st) || st.Code() != StatusSnapshotHasDependents {
		t.Fatalf("status of a refusal for dependents: %v", err)
	}

	// Malformed: refused by the initiator before sending, or by the target.
	if err := d.DestroySnapshot(ctx, "not-a-uuid"); !errors.Is(err, ErrSnapshotInvalid) {
		t.Fatalf("bad uuid: %v", err)
	}
	if err := d.DestroySnapshot(ctx, uuid.Nil.String()); !errors.Is(err, ErrSnapshotInvalid) {
		t.Fatalf("nil uuid: %v", err)
	}
	s3 := uuid.NewString()
	must(t, d.CreateSnapshot(ctx, "s3", s3))
	raw := DestroySnapshotSQE(uuid.MustParse(s3))
	raw.CDW15 = 7
	if err := d.snapshotAdmin(ctx, &raw, nil, false); !errors.Is(err, ErrSnapshotInvalid) {
		t.Fatalf("reserved CDW15 over the wire: %v", err)
	}
	raw = DestroySnapshotSQE(uuid.MustParse(s3))
	if err := d.snapshotAdmin(ctx, &raw, make([]byte, 16), true); !errors.Is(err, ErrSnapshotInvalid) {
		t.Fatalf("data with a no-data opcode: %v", err)
	}
	if !hook.has(s3) {
		t.Fatal("a malformed destroy destroyed the snapshot")
	}

	// A host that may not write (another host holds Write Exclusive) may
	// not destroy either; the hook is not asked.
	o := dial(t, tg, Config{SubNQN: nqn, HostNQN: otherHost})
	defer o.Close()
	must(t, d.ReservationRegister(0, 0, 0xA, false))
	must(t, d.ReservationAcquire(0, nvme.ResvWriteExclusive, 0xA, 0))
	hook.mu.Lock()
	calls := hook.calls
	hook.mu.Unlock()
	if err := o.DestroySnapshot(ctx, s3); !errors.Is(err, ErrSnapshotDenied) {
		t.Fatalf("destroy by a host that may not write: %v", err)
	}
	hook.mu.Lock()
	if hook.calls != calls {
		t.Errorf("a denied destroy reached the hook")
	}
	hook.mu.Unlock()
	if !hook.has(s3) {
		t.Fatal("denied destroy destroyed the snapshot")
	}
	must(t, d.DestroySnapshot(ctx, s3)) // the holder may
	if hook.has(s3) || hook.count() != 1 {
		t.Fatalf("after the holder's destroy: %d snapshots, want 1 (s2)", hook.count())
	}

	// An export without a hook refuses; the connection stays good.
	p := dial(t, tg, Config{SubNQN: plainNQN})
	defer p.Close()
	if err := p.DestroySnapshot(ctx, s3); !errors.Is(err, ErrSnapshotUnsupported) {
		t.Fatalf("export without hook: %v", err)
	}
	buf := make([]byte, 4096)
	if _, err := d.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	must(t, d.Close())
	if err := d.DestroySnapshot(ctx, cl); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// FuzzDecodeDestroySnapshotSQE: the decoder never panics, accepts only a
// non-zero UUID with CDW14/CDW15 clear, and what it accepts rebuilds to
// the same command dwords.
func FuzzDecodeDestroySnapshotSQE(f *testing.F) {
	f.Add(uint32(1), uint32(2), uint32(3), uint32(4), uint32(0), uint32(0))
	f.Add(uint32(0), uint32(0), uint32(0), uint32(0), uint32(0), uint32(0))
	f.Add(uint32(1), uint32(0), uint32(0), uint32(0), uint32(0), uint32(1))
	f.Fuzz(func(t *testing.T, c10, c11, c12, c13, c14, c15 uint32) {
		sqe := nvme.SQE{Opcode: OpcodeDestroySnapshot, NSID: 1, CDW10: c10, CDW11: c11, CDW12: c12, CDW13: c13, CDW14: c14, CDW15: c15}
		id, err := DecodeDestroySnapshotSQE(&sqe)
		if err != nil {
			if !errors.Is(err, ErrSnapshotInvalid) {
				t.Fatalf("error %v does not wrap ErrSnapshotInvalid", err)
			}
			return
		}
		if again := DestroySnapshotSQE(id); again != sqe {
			t.Fatalf("accepted %+v but rebuilds to %+v", sqe, again)
		}
	})
}
