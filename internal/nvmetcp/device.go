package nvmetcp

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

var _ blockdev.Device = (*Device)(nil)

// Size is the namespace size in bytes.
func (d *Device) Size() int64 { return d.size }

// BlockSize is the namespace's logical block size.
func (d *Device) BlockSize() int { return d.bs }

// CNTLID returns the controller ID of the current association.
func (d *Device) CNTLID() uint16 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cntlid
}

// IOQueues returns the number of I/O queues of the current association
// (what the target granted, at most Config.IOQueues).
func (d *Device) IOQueues() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.ioqs)
}

// IdentifyController returns the controller data of the current association.
func (d *Device) IdentifyController() nvme.IdentifyController {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idc
}

func (d *Device) check(off, n int64) error {
	if err := blockdev.CheckRange(off, n, d.bs, d.size); err != nil {
		return err
	}
	if d.isClosed() {
		return blockdev.ErrClosed
	}
	return nil
}

func (d *Device) rw(p []byte, off int64, write bool) (int, error) {
	if err := d.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	op := nvme.IORead
	if write {
		op = nvme.IOWrite
	}
	max := int(d.maxXfer.Load())
	done := 0
	for done < len(p) {
		n := min(len(p)-done, max)
		var sqe nvme.SQE
		sqe.Opcode = op
		sqe.SetLBA(uint64(off+int64(done))/uint64(d.bs), uint32(n/d.bs))
		if err := d.do(&sqe, p[done:done+n], write); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// ReadAt reads len(p) bytes at off (NVM Read).
func (d *Device) ReadAt(p []byte, off int64) (int, error) { return d.rw(p, off, false) }

// WriteAt writes p at off (NVM Write; ≤ 16 KiB in-capsule, larger via R2T).
func (d *Device) WriteAt(p []byte, off int64) (int, error) { return d.rw(p, off, true) }

// Flush commits completed writes (NVM Flush).
func (d *Device) Flush() error {
	if d.isClosed() {
		return blockdev.ErrClosed
	}
	return d.do(&nvme.SQE{Opcode: nvme.IOFlush}, nil, false)
}

// WriteZeroes zeroes the range (NVM Write Zeroes, ≤ 65536 blocks each).
func (d *Device) WriteZeroes(off, length int64) error {
	if err := d.check(off, length); err != nil {
		return err
	}
	slba, nlb := uint64(off/int64(d.bs)), uint64(length/int64(d.bs))
	for nlb > 0 {
		n := min(nlb, 1<<16)
		var sqe nvme.SQE
		sqe.Opcode = nvme.IOWriteZeroes
		sqe.SetLBA(slba, uint32(n))
		if err := d.do(&sqe, nil, false); err != nil {
			return err
		}
		slba, nlb = slba+n, nlb-n
	}
	return nil
}

// Unmap deallocates the range (Dataset Management with AD).
func (d *Device) Unmap(off, length int64) error {
	if err := d.check(off, length); err != nil {
		return err
	}
	slba, nlb := uint64(off/int64(d.bs)), uint64(length/int64(d.bs))
	for nlb > 0 {
		var buf [256 * 16]byte
		nr := 0
		for nlb > 0 && nr < 256 {
			n := min(nlb, 0xFFFFFFFF)
			r := buf[16*nr:]
			binary.LittleEndian.PutUint32(r[4:], uint32(n))
			binary.LittleEndian.PutUint64(r[8:], slba)
			slba, nlb, nr = slba+n, nlb-n, nr+1
		}
		sqe := nvme.SQE{Opcode: nvme.IODSM, CDW10: uint32(nr - 1), CDW11: 1 << 2}
		if err := d.do(&sqe, buf[:16*nr], true); err != nil {
			return err
		}
	}
	return nil
}

// Close shuts the controller down (CC.SHN) and closes every connection.
// Outstanding I/O fails with ErrClosed.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return blockdev.ErrClosed
	}
	d.closed = true
	close(d.closeCh)
	admin, ioqs := d.admin, d.ioqs
	d.mu.Unlock()
	for _, q := range ioqs {
		q.close()
	}
	if admin != nil {
		if !admin.dead.Load() {
			cc := uint64(6<<nvme.CCIOSQESShift | 4<<nvme.CCIOCQESShift | nvme.CCEnable | 1<<nvme.CCSHNShift)
			property(admin, true, nvme.PropCC, false, cc)
		}
		admin.close()
	}
	d.wg.Wait()
	return nil
}

// Reservation commands (NVMe Base 2.0 §7.2-7.5), used by tests and by the
// engine for multipath fencing.

// ReservationRegister registers (action 0), unregisters (1) or replaces (2)
// this host's key.
func (d *Device) ReservationRegister(action uint8, crkey, nrkey uint64, iekey bool) error {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], crkey)
	binary.LittleEndian.PutUint64(b[8:], nrkey)
	cdw10 := uint32(action&7) | 3<<30 // CPTPL: persist through power loss
	if iekey {
		cdw10 |= 1 << 3
	}
	return d.do(&nvme.SQE{Opcode: nvme.IOResvRegister, CDW10: cdw10}, b[:], true)
}

// ReservationAcquire acquires (action 0) or preempts (1) a reservation of rtype.
func (d *Device) ReservationAcquire(action, rtype uint8, crkey, prkey uint64) error {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], crkey)
	binary.LittleEndian.PutUint64(b[8:], prkey)
	return d.do(&nvme.SQE{Opcode: nvme.IOResvAcquire, CDW10: uint32(action&7) | uint32(rtype)<<8}, b[:], true)
}

// ReservationRelease releases (action 0) or clears (1) the reservation.
func (d *Device) ReservationRelease(action, rtype uint8, crkey uint64) error {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], crkey)
	return d.do(&nvme.SQE{Opcode: nvme.IOResvRelease, CDW10: uint32(action&7) | uint32(rtype)<<8}, b[:], true)
}

// ReservationStatus is a decoded Reservation Report.
type ReservationStatus struct {
	Generation  uint32
	Type        uint8
	PTPL        bool
	Registrants []Registrant
}

// Registrant is one registered host.
type Registrant struct {
	HostID [16]byte
	Key    uint64
	Holder bool
}

// ReservationReport reads the extended reservation status.
func (d *Device) ReservationReport() (ReservationStatus, error) {
	buf := make([]byte, 4096)
	err := d.do(&nvme.SQE{Opcode: nvme.IOResvReport, CDW10: uint32(len(buf)/4 - 1), CDW11: 1}, buf, false)
	if err != nil {
		return ReservationStatus{}, err
	}
	rs := ReservationStatus{Generation: binary.LittleEndian.Uint32(buf[0:]), Type: buf[4], PTPL: buf[9]&1 != 0}
	n := int(binary.LittleEndian.Uint16(buf[5:]))
	for i := 0; i < n && 64+64*(i+1) <= len(buf); i++ {
		e := buf[64+64*i:]
		var r Registrant
		r.Holder = e[2]&1 != 0
		r.Key = binary.LittleEndian.Uint64(e[8:])
		copy(r.HostID[:], e[16:32])
		rs.Registrants = append(rs.Registrants, r)
	}
	return rs, nil
}

// DefaultPort is the port assumed when an nvmf:// URI has none.
const DefaultPort = 8420

// ParseURI parses nvmf://host[:port]/NQN?hostnqn=...&nr_io_queues=N
// &queue_size=N&kato_ms=N&reconnect_timeout_ms=N&io_timeout_ms=N
// &hdr_digest=0|1&data_digest=0|1 into a Config (kato_ms=0 and
// io_timeout_ms=0 turn keep-alive and the I/O timeout off).
// Unknown parameters are rejected.
func ParseURI(uri string) (Config, error) {
	u, err := blockdev.ParseURI(uri)
	if err != nil {
		return Config{}, err
	}
	return configFromURL(u)
}

func configFromURL(u *url.URL) (Config, error) {
	var cfg Config
	if u.Scheme != "nvmf" && u.Scheme != "nvmf+tcp" {
		return cfg, fmt.Errorf("%w %q: scheme must be nvmf or nvmf+tcp", blockdev.ErrInvalidURI, u.Redacted())
	}
	host := u.Hostname()
	if host == "" {
		return cfg, fmt.Errorf("%w %q: missing host (nvmf://host:port/NQN)", blockdev.ErrInvalidURI, u.Redacted())
	}
	port := DefaultPort
	if p := u.Port(); p != "" {
		v, err := strconv.Atoi(p)
		if err != nil || v < 1 || v > 65535 {
			return cfg, fmt.Errorf("%w %q: bad port %q", blockdev.ErrInvalidURI, u.Redacted(), p)
		}
		port = v
	}
	cfg.Addr = net.JoinHostPort(host, strconv.Itoa(port))
	cfg.SubNQN = strings.TrimPrefix(u.Path, "/")
	if err := nvme.ValidateNQN(cfg.SubNQN); err != nil {
		return cfg, fmt.Errorf("%w %q: %w", blockdev.ErrInvalidURI, u.Redacted(), err)
	}
	p := blockdev.NewParams(u)
	cfg.HostNQN = p.String("hostnqn", "")
	cfg.IOQueues = int(p.Int("nr_io_queues", 0, 1, maxIOQueues))
	cfg.QueueSize = int(p.Int("queue_size", 0, 2, mqes+1))
	cfg.KATO = time.Duration(p.Int("kato_ms", 0, 0, 3600000)) * time.Millisecond
	if _, ok := u.Query()["kato_ms"]; ok && cfg.KATO == 0 {
		cfg.KATO = -1
	}
	cfg.ReconnectTimeout = time.Duration(p.Int("reconnect_timeout_ms", 0, 1, 3600000)) * time.Millisecond
	cfg.IOTimeout = time.Duration(p.Int("io_timeout_ms", 0, 0, 3600000)) * time.Millisecond
	if _, ok := u.Query()["io_timeout_ms"]; ok && cfg.IOTimeout == 0 {
		cfg.IOTimeout = -1 // io_timeout_ms=0: no I/O timeout
	}
	cfg.HeaderDigest = p.Int("hdr_digest", 0, 0, 1) == 1
	cfg.DataDigest = p.Int("data_digest", 0, 0, 1) == 1
	if err := p.Done(); err != nil {
		return cfg, err
	}
	if cfg.HostNQN != "" {
		if err := nvme.ValidateNQN(cfg.HostNQN); err != nil {
			return cfg, fmt.Errorf("%w %q: hostnqn: %w", blockdev.ErrInvalidURI, u.Redacted(), err)
		}
	}
	return cfg, nil
}

// DialURI parses an nvmf:// URI and dials it.
func DialURI(ctx context.Context, uri string) (*Device, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	return Dial(ctx, cfg)
}

// RegisterScheme registers "nvmf" and "nvmf+tcp" with r.
func RegisterScheme(r *blockdev.Registry) { RegisterSchemeWith(r, nil) }

// RegisterSchemeWith is RegisterScheme with the logger connections log to
// (nil: slog.Default()).
func RegisterSchemeWith(r *blockdev.Registry, logger *slog.Logger) {
	open := func(ctx context.Context, u *url.URL) (blockdev.Device, error) {
		cfg, err := configFromURL(u)
		if err != nil {
			return nil, err
		}
		if cfg.Logger == nil {
			cfg.Logger = logger
		}
		return Dial(ctx, cfg)
	}
	r.Register("nvmf", open)
	r.Register("nvmf+tcp", open)
}
