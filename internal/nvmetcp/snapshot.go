package nvmetcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// Kura's vendor-specific admin commands (NVMe Base 2.0: admin opcodes
// C0h–FFh are vendor specific; the low two bits give the data direction).
// They let a host that is connected to a namespace ask the target to
// snapshot it — how a nexus snapshots its remote replicas (docs/nvmetcp.md).
const (
	// OpcodeCreateSnapshot (host → controller data) creates a snapshot of
	// namespace 1. The data is the layout EncodeSnapshotCmd produces.
	OpcodeCreateSnapshot uint8 = 0xC1
	// OpcodeSnapshotInfo (controller → host data) returns a
	// SnapshotInfoSize-byte page describing the snapshot whose UUID is in
	// CDW10–CDW13 (byte i of the UUID is byte i%4 of CDW(10+i/4)).
	OpcodeSnapshotInfo uint8 = 0xC2
	// OpcodeDestroySnapshot (no data) destroys the snapshot of namespace 1
	// whose UUID is in CDW10–CDW13 (as for Snapshot Info); CDW14 and CDW15
	// are reserved (0). It is C4h, not C3h: the low two opcode bits 11b
	// would declare a bidirectional data transfer, 00b declares none.
	OpcodeDestroySnapshot uint8 = 0xC4
)

// Layout of the Create Snapshot data and the Snapshot Info page.
const (
	snapCmdVersion = 1
	snapCmdHeader  = 20
	// MaxSnapshotName is the longest snapshot name the commands carry.
	MaxSnapshotName = 255
	maxSnapCmd      = snapCmdHeader + MaxSnapshotName
	// SnapshotInfoSize is the length of the Snapshot Info page.
	SnapshotInfoSize = 1024
	snapInfoPoolOff  = 64
	snapInfoNameOff  = 320
	snapInfoSrcOff   = 576
	snapInfoStrMax   = 255
)

// Command-specific status codes of the snapshot commands (SCT 1, SC in
// the vendor-specific range C0h–FFh).
var (
	// StatusSnapshotExists: the name or UUID is taken by another object.
	StatusSnapshotExists = nvme.MakeStatus(nvme.SCTCmdSpec, 0xC0)
	// StatusSnapshotNotFound: no snapshot of this namespace has the UUID.
	StatusSnapshotNotFound = nvme.MakeStatus(nvme.SCTCmdSpec, 0xC1)
	// StatusSnapshotHasDependents: Destroy Snapshot refused because clones
	// (or more than one volume) read through the snapshot.
	StatusSnapshotHasDependents = nvme.MakeStatus(nvme.SCTCmdSpec, 0xC2)
)

// Errors of the snapshot commands. Hooks return (wrap) the first four so
// the target answers with the matching status; the initiator returns all
// of them, wrapping the NVMe status.
var (
	ErrSnapshotExists        = errors.New("nvmetcp: snapshot name or uuid already in use")
	ErrSnapshotInvalid       = errors.New("nvmetcp: invalid snapshot command")
	ErrSnapshotNotFound      = errors.New("nvmetcp: snapshot not found")
	ErrSnapshotHasDependents = errors.New("nvmetcp: snapshot has dependents (clones)")
	ErrSnapshotUnsupported   = errors.New("nvmetcp: the subsystem does not take snapshots")
	ErrSnapshotDenied        = errors.New("nvmetcp: host may not snapshot the namespace (reservation conflict)")
)

// SnapshotInfo describes a snapshot taken through a SnapshotHook.
type SnapshotInfo struct {
	Pool, Name, UUID, Source string
	Size                     uint64 // bytes
	Referenced, Exclusive    uint64 // bytes visible in / held only by the snapshot
	Created                  time.Time
}

// SnapshotHook lets a subsystem snapshot its namespace on behalf of a
// connected host (SubsystemConfig.Snapshots). Calls come from the admin
// queue of the host's controller; the target has already checked that the
// host may write the namespace (for CreateSnapshot and DestroySnapshot).
// CreateSnapshot must be idempotent for the same name and UUID (uuid ""
// lets the hook pick one).
//
// SnapshotInfo and DestroySnapshot concern snapshots of the namespace
// only: a UUID of anything else (another volume's snapshot, a volume, an
// unknown or already destroyed snapshot) is ErrSnapshotNotFound, so a host
// learns nothing about other objects and a repeated destroy is told apart
// from a first one. DestroySnapshot must never force: a snapshot that
// clones depend on is ErrSnapshotHasDependents.
type SnapshotHook interface {
	CreateSnapshot(ctx context.Context, name, uuid string) error
	SnapshotInfo(ctx context.Context, uuid string) (SnapshotInfo, error)
	DestroySnapshot(ctx context.Context, uuid string) error
}

// snapshotTimeout bounds one hook call.
const snapshotTimeout = 30 * time.Second

// EncodeSnapshotCmd builds the Create Snapshot data: version (1 byte, 1),
// name length N (1 byte, 1..255), reserved (2 bytes, 0), UUID (16 bytes,
// RFC 4122 order; all zero: the target picks one), name (N bytes of UTF-8
// without control characters). The length is exactly 20+N.
func EncodeSnapshotCmd(name string, id [16]byte) ([]byte, error) {
	if err := checkSnapshotName(name); err != nil {
		return nil, err
	}
	b := make([]byte, snapCmdHeader+len(name))
	b[0], b[1] = snapCmdVersion, byte(len(name))
	copy(b[4:20], id[:])
	copy(b[snapCmdHeader:], name)
	return b, nil
}

// DecodeSnapshotCmd parses and validates Create Snapshot data.
func DecodeSnapshotCmd(b []byte) (name string, id [16]byte, err error) {
	if len(b) < snapCmdHeader+1 || len(b) > maxSnapCmd {
		return "", id, fmt.Errorf("%w: data length %d (want %d..%d)", ErrSnapshotInvalid, len(b), snapCmdHeader+1, maxSnapCmd)
	}
	if b[0] != snapCmdVersion {
		return "", id, fmt.Errorf("%w: version %d", ErrSnapshotInvalid, b[0])
	}
	if b[2] != 0 || b[3] != 0 {
		return "", id, fmt.Errorf("%w: reserved bytes set", ErrSnapshotInvalid)
	}
	if n := int(b[1]); snapCmdHeader+n != len(b) {
		return "", id, fmt.Errorf("%w: name length %d does not match data length %d", ErrSnapshotInvalid, n, len(b))
	}
	copy(id[:], b[4:20])
	name = string(b[snapCmdHeader:])
	if err := checkSnapshotName(name); err != nil {
		return "", id, err
	}
	return name, id, nil
}

func checkSnapshotName(name string) error {
	if len(name) == 0 || len(name) > MaxSnapshotName || !utf8.ValidString(name) {
		return fmt.Errorf("%w: name %q must be 1..%d bytes of UTF-8", ErrSnapshotInvalid, name, MaxSnapshotName)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: name %q contains a control character", ErrSnapshotInvalid, name)
		}
	}
	return nil
}

// DestroySnapshotSQE builds the Destroy Snapshot command for the snapshot
// id of namespace 1.
func DestroySnapshotSQE(id [16]byte) nvme.SQE {
	sqe := nvme.SQE{Opcode: OpcodeDestroySnapshot, NSID: 1}
	uuidCDWs(&sqe, id)
	return sqe
}

// DecodeDestroySnapshotSQE validates the command-specific fields of
// Destroy Snapshot (CDW10–CDW13: a UUID that is not all zero; CDW14 and
// CDW15: 0) and returns the UUID.
func DecodeDestroySnapshotSQE(sqe *nvme.SQE) (id [16]byte, err error) {
	if sqe.CDW14 != 0 || sqe.CDW15 != 0 {
		return id, fmt.Errorf("%w: reserved CDW14/CDW15 set (%#x, %#x)", ErrSnapshotInvalid, sqe.CDW14, sqe.CDW15)
	}
	id = uuidFromCDWs(sqe)
	if id == ([16]byte{}) {
		return id, fmt.Errorf("%w: all-zero snapshot uuid", ErrSnapshotInvalid)
	}
	return id, nil
}

func uuidString(id [16]byte) string {
	if id == ([16]byte{}) {
		return ""
	}
	return uuid.UUID(id).String()
}

// uuidCDWs packs a UUID into CDW10–CDW13.
func uuidCDWs(sqe *nvme.SQE, id [16]byte) {
	sqe.CDW10 = binary.LittleEndian.Uint32(id[0:])
	sqe.CDW11 = binary.LittleEndian.Uint32(id[4:])
	sqe.CDW12 = binary.LittleEndian.Uint32(id[8:])
	sqe.CDW13 = binary.LittleEndian.Uint32(id[12:])
}

func uuidFromCDWs(sqe *nvme.SQE) (id [16]byte) {
	binary.LittleEndian.PutUint32(id[0:], sqe.CDW10)
	binary.LittleEndian.PutUint32(id[4:], sqe.CDW11)
	binary.LittleEndian.PutUint32(id[8:], sqe.CDW12)
	binary.LittleEndian.PutUint32(id[12:], sqe.CDW13)
	return id
}

// marshalSnapshotInfo fills the Snapshot Info page: version (1), pool,
// name and source lengths (1 byte each), reserved (4), size, referenced,
// exclusive (u64 LE), creation time (i64 LE, Unix ns), UUID (16), reserved
// (8), then the pool name at 64, the snapshot name at 320 and the source
// at 576 (each ≤ 255 bytes); the rest is zero.
func marshalSnapshotInfo(b []byte, si SnapshotInfo) error {
	if len(si.Pool) > snapInfoStrMax || len(si.Name) > snapInfoStrMax || len(si.Source) > snapInfoStrMax {
		return fmt.Errorf("snapshot info: a name is longer than %d bytes", snapInfoStrMax)
	}
	var id uuid.UUID
	if si.UUID != "" {
		var err error
		if id, err = uuid.Parse(si.UUID); err != nil {
			return fmt.Errorf("snapshot info: uuid: %w", err)
		}
	}
	clear(b[:SnapshotInfoSize])
	b[0], b[1], b[2], b[3] = 1, byte(len(si.Pool)), byte(len(si.Name)), byte(len(si.Source))
	binary.LittleEndian.PutUint64(b[8:], si.Size)
	binary.LittleEndian.PutUint64(b[16:], si.Referenced)
	binary.LittleEndian.PutUint64(b[24:], si.Exclusive)
	var created int64
	if !si.Created.IsZero() {
		created = si.Created.UnixNano()
	}
	binary.LittleEndian.PutUint64(b[32:], uint64(created))
	copy(b[40:56], id[:])
	copy(b[snapInfoPoolOff:], si.Pool)
	copy(b[snapInfoNameOff:], si.Name)
	copy(b[snapInfoSrcOff:], si.Source)
	return nil
}

func unmarshalSnapshotInfo(b []byte) (SnapshotInfo, error) {
	if len(b) != SnapshotInfoSize || b[0] != 1 {
		return SnapshotInfo{}, fmt.Errorf("%w: snapshot info page (length %d, version %d)", ErrSnapshotInvalid, len(b), b[0])
	}
	si := SnapshotInfo{
		Pool:       string(b[snapInfoPoolOff : snapInfoPoolOff+int(b[1])]),
		Name:       string(b[snapInfoNameOff : snapInfoNameOff+int(b[2])]),
		Source:     string(b[snapInfoSrcOff : snapInfoSrcOff+int(b[3])]),
		Size:       binary.LittleEndian.Uint64(b[8:]),
		Referenced: binary.LittleEndian.Uint64(b[16:]),
		Exclusive:  binary.LittleEndian.Uint64(b[24:]),
		UUID:       uuidString([16]byte(b[40:56])),
	}
	if ns := int64(binary.LittleEndian.Uint64(b[32:])); ns != 0 {
		si.Created = time.Unix(0, ns)
	}
	return si, nil
}

// --- target ---

// snapshotCmd runs Create Snapshot, Snapshot Info or Destroy Snapshot on
// the admin queue.
func (c *controller) snapshotCmd(s *slot) {
	sq := &s.sqe
	sub := c.s
	hook := sub.snaps
	if hook == nil || sub.discovery {
		s.status = nvme.StatusInvalidOpcode | nvme.StatusDNR
		return
	}
	if !c.nsAccessible(s) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	if sq.Opcode == OpcodeSnapshotInfo {
		b := needC2H(s, SnapshotInfoSize)
		if b == nil {
			return
		}
		s.c2h = 0
		id := uuidFromCDWs(sq)
		if id == ([16]byte{}) {
			s.status = nvme.StatusInvalidField | nvme.StatusDNR
			return
		}
		si, err := hook.SnapshotInfo(ctx, uuidString(id))
		if err == nil {
			err = marshalSnapshotInfo(b, si)
		}
		if err != nil {
			s.status = snapshotStatus(err)
			return
		}
		s.c2h = SnapshotInfoSize
		return
	}
	if sq.Opcode == OpcodeDestroySnapshot {
		c.destroySnapshot(ctx, s, hook)
		return
	}
	if s.dir != nvme.DirHostToCtrl || s.xfer == 0 || s.xfer > maxSnapCmd || uint32(len(s.buf)) < s.xfer {
		s.status = nvme.StatusSGLInvalidLength | nvme.StatusDNR
		return
	}
	// A snapshot fixes the namespace's content: only a host that may write
	// it may take one.
	if !sub.resv.allowed(c.hostID, true) {
		s.status = nvme.StatusReservationConflict | nvme.StatusDNR
		return
	}
	name, id, err := DecodeSnapshotCmd(s.buf[:s.xfer])
	if err == nil {
		err = hook.CreateSnapshot(ctx, name, uuidString(id))
	}
	if err != nil {
		s.status = snapshotStatus(err)
		sub.t.log.Warn("snapshot refused", "nqn", sub.nqn, "host", c.hostNQN, "snapshot", name, "status", s.status.String(), "err", err)
		return
	}
	sub.t.log.Info("snapshot created for host", "nqn", sub.nqn, "host", c.hostNQN, "snapshot", name)
}

// destroySnapshot runs Destroy Snapshot: no data, the UUID in CDW10–13,
// the same write permission as Create Snapshot.
func (c *controller) destroySnapshot(ctx context.Context, s *slot, hook SnapshotHook) {
	sub := c.s
	if s.xfer != 0 {
		s.status = nvme.StatusSGLInvalidLength | nvme.StatusDNR
		return
	}
	id, err := DecodeDestroySnapshotSQE(&s.sqe)
	if err != nil {
		s.status = snapshotStatus(err)
		return
	}
	// Destroying a snapshot of the namespace changes what can be restored
	// of it: only a host that may write it may.
	if !sub.resv.allowed(c.hostID, true) {
		s.status = nvme.StatusReservationConflict | nvme.StatusDNR
		return
	}
	u := uuidString(id)
	if err := hook.DestroySnapshot(ctx, u); err != nil {
		s.status = snapshotStatus(err)
		if !errors.Is(err, ErrSnapshotNotFound) {
			sub.t.log.Warn("snapshot destroy refused", "nqn", sub.nqn, "host", c.hostNQN, "uuid", u, "status", s.status.String(), "err", err)
		}
		return
	}
	sub.t.log.Info("snapshot destroyed for host", "nqn", sub.nqn, "host", c.hostNQN, "uuid", u)
}

// snapshotStatus maps a hook error to a completion status.
func snapshotStatus(err error) nvme.Status {
	switch {
	case errors.Is(err, ErrSnapshotExists):
		return StatusSnapshotExists | nvme.StatusDNR
	case errors.Is(err, ErrSnapshotNotFound):
		return StatusSnapshotNotFound | nvme.StatusDNR
	case errors.Is(err, ErrSnapshotHasDependents):
		return StatusSnapshotHasDependents | nvme.StatusDNR
	case errors.Is(err, ErrSnapshotInvalid):
		return nvme.StatusInvalidField | nvme.StatusDNR
	case errors.Is(err, blockdev.ErrNoSpace):
		return nvme.StatusCapExceeded | nvme.StatusDNR
	case errors.Is(err, blockdev.ErrClosed):
		return nvme.StatusNSNotReady | nvme.StatusDNR
	case errors.Is(err, context.DeadlineExceeded):
		return nvme.StatusInternal
	}
	return nvme.StatusInternal | nvme.StatusDNR
}

// snapshotEffects is the Commands Supported and Effects log of a
// subsystem with a SnapshotHook: the standard one plus the vendor
// commands (supported, no other effect: none changes the namespace's
// content or capabilities).
var snapshotEffects = func() []byte {
	b := append([]byte(nil), commandEffects...)
	for _, op := range []uint8{OpcodeCreateSnapshot, OpcodeSnapshotInfo, OpcodeDestroySnapshot} {
		binary.LittleEndian.PutUint32(b[4*int(op):], nvme.EffectsCSUPP)
	}
	return b
}()

// --- initiator ---

// CreateSnapshot asks the target to snapshot the namespace as name (uuid
// "" lets the target pick one) with the Create Snapshot vendor command on
// the admin queue. It is idempotent for the same name and UUID. Errors wrap
// ErrSnapshotUnsupported (the export has no snapshot hook: not a replica),
// ErrSnapshotExists, ErrSnapshotInvalid, ErrSnapshotDenied (reservation),
// or the blockdev error of the status.
func (d *Device) CreateSnapshot(ctx context.Context, name, id string) error {
	var raw [16]byte
	if id != "" {
		u, err := uuid.Parse(id)
		if err != nil {
			return fmt.Errorf("%w: uuid %q: %v", ErrSnapshotInvalid, id, err)
		}
		raw = u
	}
	data, err := EncodeSnapshotCmd(name, raw)
	if err != nil {
		return err
	}
	sqe := nvme.SQE{Opcode: OpcodeCreateSnapshot}
	if err := d.snapshotAdmin(ctx, &sqe, data, true); err != nil {
		return fmt.Errorf("snapshot %q of %s: %w", name, d.cfg.SubNQN, err)
	}
	return nil
}

// SnapshotInfo describes the snapshot with the given UUID of the
// namespace (Snapshot Info vendor command).
func (d *Device) SnapshotInfo(ctx context.Context, id string) (SnapshotInfo, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("%w: uuid %q: %v", ErrSnapshotInvalid, id, err)
	}
	sqe := nvme.SQE{Opcode: OpcodeSnapshotInfo}
	uuidCDWs(&sqe, u)
	buf := make([]byte, SnapshotInfoSize)
	if err := d.snapshotAdmin(ctx, &sqe, buf, false); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot %s of %s: %w", id, d.cfg.SubNQN, err)
	}
	return unmarshalSnapshotInfo(buf)
}

// DestroySnapshot asks the target to destroy the snapshot with the given
// UUID of the namespace (Destroy Snapshot vendor command). The target never
// forces. Errors wrap ErrSnapshotNotFound (no snapshot of this namespace
// has the UUID: already destroyed, never taken, or another volume's —
// callers that only want it gone treat this as success),
// ErrSnapshotHasDependents (clones depend on it), ErrSnapshotDenied
// (reservation), ErrSnapshotInvalid, ErrSnapshotUnsupported (no snapshot
// hook, or a target predating the command), or the blockdev error of the
// status.
func (d *Device) DestroySnapshot(ctx context.Context, id string) error {
	u, err := uuid.Parse(id)
	if err != nil {
		return fmt.Errorf("%w: uuid %q: %v", ErrSnapshotInvalid, id, err)
	}
	if u == (uuid.UUID{}) {
		return fmt.Errorf("%w: all-zero uuid", ErrSnapshotInvalid)
	}
	sqe := DestroySnapshotSQE(u)
	if err := d.snapshotAdmin(ctx, &sqe, nil, false); err != nil {
		return fmt.Errorf("destroy snapshot %s of %s: %w", id, d.cfg.SubNQN, err)
	}
	return nil
}

func (d *Device) snapshotAdmin(ctx context.Context, sqe *nvme.SQE, data []byte, write bool) error {
	timeout := snapshotTimeout + 5*time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return context.DeadlineExceeded
		}
	}
	for {
		q, err := d.adminQueue(ctx)
		if err != nil {
			return err
		}
		sqe.NSID = d.nsid
		cqe, err := q.submit(sqe, data, write, timeout)
		switch {
		case errors.Is(err, errQueueDead):
			continue // never sent: retry on the new association
		case err != nil:
			if d.isClosed() {
				return fmt.Errorf("%w: %w", blockdev.ErrClosed, err)
			}
			return fmt.Errorf("%w: %w", blockdev.ErrIO, err)
		}
		return snapshotErr(cqe.Status)
	}
}

// adminQueue returns the admin queue of the current association, waiting
// (bounded by ctx and ReconnectTimeout) for a reconnect.
func (d *Device) adminQueue(ctx context.Context) (*hqueue, error) {
	t := time.NewTimer(d.cfg.ReconnectTimeout)
	defer t.Stop()
	for {
		d.mu.Lock()
		closed, ready, admin := d.closed, d.ready, d.admin
		d.mu.Unlock()
		if closed {
			return nil, blockdev.ErrClosed
		}
		select {
		case <-ready:
			if admin != nil && !admin.dead.Load() {
				return admin, nil
			}
			// Dead but the reconnect has not started yet: wait a little.
			select {
			case <-time.After(time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		case <-d.closeCh:
			return nil, blockdev.ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, fmt.Errorf("%w: not reconnected to %s within %v", blockdev.ErrTimeout, d.cfg.SubNQN, d.cfg.ReconnectTimeout)
		}
	}
}

// snapshotErr maps the status of a snapshot command to an error.
func snapshotErr(s nvme.Status) error {
	switch s.Code() {
	case nvme.StatusSuccess:
		return nil
	case nvme.StatusInvalidOpcode:
		return fmt.Errorf("%w: %w", ErrSnapshotUnsupported, s)
	case StatusSnapshotExists:
		return fmt.Errorf("%w: %w", ErrSnapshotExists, s)
	case StatusSnapshotNotFound:
		return fmt.Errorf("%w: %w", ErrSnapshotNotFound, s)
	case StatusSnapshotHasDependents:
		return fmt.Errorf("%w: %w", ErrSnapshotHasDependents, s)
	case nvme.StatusInvalidField, nvme.StatusSGLInvalidLength:
		return fmt.Errorf("%w: %w", ErrSnapshotInvalid, s)
	case nvme.StatusReservationConflict:
		return fmt.Errorf("%w: %w", ErrSnapshotDenied, s)
	}
	return statusErr(s)
}
