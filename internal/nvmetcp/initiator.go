package nvmetcp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// Config configures an initiator connection to one subsystem.
type Config struct {
	Addr    string // host:port of the target
	SubNQN  string
	HostNQN string   // default: DefaultHostNQN()
	HostID  [16]byte // default: derived from HostNQN
	// IOQueues is the number of I/O queues (one TCP connection each);
	// default 2. QueueSize is entries per I/O queue (default 128).
	IOQueues, QueueSize int
	// KATO is the keep-alive timeout requested in Connect (default 5 s;
	// negative disables keep-alive).
	KATO                     time.Duration
	HeaderDigest, DataDigest bool
	// SQFlowControl keeps SQ flow control on for I/O queues. By default the
	// initiator disables it (Connect CATTR bit 2), which lets the target end
	// a successful read with C2HData SUCCESS and skip the response capsule.
	SQFlowControl bool
	DialTimeout   time.Duration // per TCP connect + ICReq (default 5 s)
	// ReconnectTimeout bounds how long an I/O waits for a lost connection to
	// come back before failing with ErrTimeout (default 30 s). Reconnect
	// attempts continue (with backoff up to 5 s) until Close.
	ReconnectTimeout time.Duration
	// IOTimeout bounds how long an I/O command may stay outstanding
	// (default 30 s, as Linux's nvme_core.io_timeout; negative disables).
	// When one exceeds it the target is presumed stuck: the association is
	// torn down and reconnected, as after a connection loss, and the
	// commands that were in flight on it fail with blockdev.ErrTimeout.
	IOTimeout time.Duration
	// OnEvent, if set, receives the target's asynchronous events (ANA
	// changes, reservation notifications; events.go), one at a time on the
	// association's events goroutine. It must return promptly and must not
	// call Close.
	OnEvent func(Event)
	Logger  *slog.Logger
}

var (
	defaultHostOnce sync.Once
	defaultHost     string
)

// DefaultHostNQN is the host NQN used when Config.HostNQN is empty: a
// UUID-based NQN generated once per process.
func DefaultHostNQN() string {
	defaultHostOnce.Do(func() { defaultHost = "nqn.2014-08.org.nvmexpress:uuid:" + uuid.NewString() })
	return defaultHost
}

func (c *Config) setDefaults() error {
	if c.HostNQN == "" {
		c.HostNQN = DefaultHostNQN()
	}
	if err := nvme.ValidateNQN(c.HostNQN); err != nil {
		return fmt.Errorf("host NQN: %w", err)
	}
	if err := nvme.ValidateNQN(c.SubNQN); err != nil {
		return fmt.Errorf("subsystem NQN: %w", err)
	}
	if c.HostID == ([16]byte{}) {
		sum := sha256.Sum256([]byte(c.HostNQN))
		copy(c.HostID[:], sum[:16])
	}
	if c.IOQueues <= 0 {
		c.IOQueues = 2
	}
	if c.IOQueues > maxIOQueues {
		return fmt.Errorf("%w: %d I/O queues (max %d)", ErrInvalidConfig, c.IOQueues, maxIOQueues)
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 128
	}
	if c.QueueSize < 2 || c.QueueSize > mqes+1 {
		return fmt.Errorf("%w: queue size %d (2..%d)", ErrInvalidConfig, c.QueueSize, mqes+1)
	}
	if c.KATO == 0 {
		c.KATO = 5 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ReconnectTimeout <= 0 {
		c.ReconnectTimeout = 30 * time.Second
	}
	if c.IOTimeout == 0 {
		c.IOTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Device is a remote NVMe namespace reached over NVMe/TCP; it implements
// blockdev.Device. I/O is spread round-robin over the I/O queues.
//
// Connection loss: commands in flight when a connection breaks fail with
// an error wrapping blockdev.ErrIO (they are not retried: a write may or may
// not have reached the media, and the caller — e.g. a nexus — decides).
// A command outstanding longer than IOTimeout is treated the same way: the
// association is reset and its commands fail with blockdev.ErrTimeout.
// Commands issued while reconnecting wait up to ReconnectTimeout, then fail
// with blockdev.ErrTimeout. A background goroutine reconnects with backoff
// until Close.
type Device struct {
	cfg  Config
	log  *slog.Logger
	size int64
	bs   int
	nsid uint32

	mu      sync.Mutex // guards the fields below
	admin   *hqueue
	ioqs    []*hqueue
	cntlid  uint16
	idc     nvme.IdentifyController
	ready   chan struct{} // closed while connected
	closed  bool
	closeCh chan struct{}
	gen     uint64 // connection generation

	maxXfer atomic.Int64
	rr      atomic.Uint32
	ana     atomic.Uint32  // ANA state of the namespace's group (events.go)
	wg      sync.WaitGroup // keep-alive and reconnect goroutines
}

// Dial connects to the subsystem: admin queue, controller enable,
// Identify, I/O queues, then starts keep-alive.
func Dial(ctx context.Context, cfg Config) (*Device, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	d := &Device{cfg: cfg, log: cfg.Logger.With("component", "nvmetcp-host", "subnqn", cfg.SubNQN, "addr", cfg.Addr),
		closeCh: make(chan struct{}), ready: make(chan struct{})}
	if err := d.connect(ctx, true); err != nil {
		return nil, err
	}
	return d, nil
}

// connect builds the whole association. Caller must not hold d.mu.
func (d *Device) connect(ctx context.Context, first bool) (err error) {
	cfg := &d.cfg
	admin, err := dialQueue(ctx, cfg, 0, 32)
	if err != nil {
		return err
	}
	var ioqs []*hqueue
	defer func() {
		if err != nil {
			for _, q := range ioqs {
				q.close()
			}
			admin.close()
		}
	}()
	kato := cfg.KATO
	if kato < 0 {
		kato = 0
	}
	cntlid, err := fabricsConnect(admin, cfg, 0, 31, uint32(kato/time.Millisecond), 0xFFFF, false)
	if err != nil {
		return err
	}
	if err := enableController(admin); err != nil {
		return err
	}
	buf := make([]byte, nvme.IdentifySize)
	var idc nvme.IdentifyController
	if err := adminCmd(admin, &nvme.SQE{Opcode: nvme.AdminIdentify, CDW10: uint32(nvme.CNSController)}, buf); err != nil {
		return fmt.Errorf("identify controller: %w", err)
	}
	idc.Unmarshal(buf)
	if idc.CNTLID != cntlid {
		return fmt.Errorf("%w: identify cntlid %d differs from connect cntlid %d", ErrConnect, idc.CNTLID, cntlid)
	}
	if idc.CNTRLTYPE == nvme.CtrlTypeDiscovery {
		return fmt.Errorf("%w: %s is a discovery controller", ErrConnect, cfg.SubNQN)
	}
	n := uint32(cfg.IOQueues)
	var cqe nvme.CQE
	cqe, err = admin.submit(&nvme.SQE{Opcode: nvme.AdminSetFeatures, CDW10: uint32(nvme.FeatNumQueues), CDW11: (n - 1) | (n-1)<<16}, nil, false, cfg.DialTimeout)
	if err == nil && !cqe.Status.OK() {
		err = cqe.Status
	}
	if err != nil {
		return fmt.Errorf("%w: set number of queues: %w", ErrConnect, err)
	}
	n = min(n, min(cqe.DW0&0xFFFF, cqe.DW0>>16)+1)
	if err := adminCmd(admin, &nvme.SQE{Opcode: nvme.AdminIdentify, CDW10: uint32(nvme.CNSActiveNSList)}, buf); err != nil {
		return fmt.Errorf("identify namespace list: %w", err)
	}
	nsid := uint32(buf[0]) | uint32(buf[1])<<8 | uint32(buf[2])<<16 | uint32(buf[3])<<24
	if nsid == 0 {
		return fmt.Errorf("%w: subsystem %s has no active namespace", ErrConnect, cfg.SubNQN)
	}
	if err := adminCmd(admin, &nvme.SQE{Opcode: nvme.AdminIdentify, NSID: nsid, CDW10: uint32(nvme.CNSNamespace)}, buf); err != nil {
		return fmt.Errorf("identify namespace: %w", err)
	}
	var idn nvme.IdentifyNamespace
	idn.Unmarshal(buf)
	bs := 1 << idn.LBADS
	if bs != 512 && bs != 4096 || idn.NCAP == 0 {
		return fmt.Errorf("%w: namespace %d has block size %d, capacity %d", ErrConnect, nsid, bs, idn.NCAP)
	}
	size := int64(idn.NSZE) * int64(bs)
	entries := min(cfg.QueueSize, int(idc.MAXCMD))
	icd := 0
	if idc.IOCCSZ > 4 {
		icd = int(idc.IOCCSZ)*16 - 64
	}
	for qid := uint16(1); qid <= uint16(n); qid++ {
		q, err := dialQueue(ctx, cfg, qid, entries)
		if err != nil {
			return err
		}
		ioqs = append(ioqs, q)
		if _, err := fabricsConnect(q, cfg, qid, uint16(entries-1), 0, cntlid, !cfg.SQFlowControl); err != nil {
			return err
		}
		q.icdMax = icd
	}
	xfer := int64(maxTransfer)
	if idc.MDTS != 0 && idc.MDTS < 20 {
		xfer = min(xfer, int64(4096)<<idc.MDTS)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if first {
		d.size, d.bs, d.nsid = size, bs, nsid
	} else if size != d.size || bs != d.bs || nsid != d.nsid {
		return fmt.Errorf("%w: namespace geometry changed across reconnect (%d×%d → %d×%d)", ErrConnect, d.size, d.bs, size, bs)
	}
	d.maxXfer.Store(xfer)
	d.admin, d.ioqs, d.cntlid, d.idc = admin, ioqs, cntlid, idc
	d.gen++
	close(d.ready)
	gen := d.gen
	d.wg.Add(2)
	go d.watch(admin, ioqs, gen, kato)
	go d.events(admin, idc.CMIC)
	d.log.Debug("connected", "cntlid", cntlid, "io_queues", n, "size", size, "block_size", bs)
	return nil
}

// fabricsConnect sends Connect on q and returns the controller ID.
func fabricsConnect(q *hqueue, cfg *Config, qid, sqsize uint16, katoMS uint32, cntlid uint16, noSQFlow bool) (uint16, error) {
	data := make([]byte, nvme.ConnectDataSize)
	cd := nvme.ConnectData{HostID: cfg.HostID, CNTLID: cntlid, SubNQN: cfg.SubNQN, HostNQN: cfg.HostNQN}
	cd.Marshal(data)
	sqe := nvme.SQE{Opcode: nvme.OpcodeFabrics, NSID: uint32(nvme.FabricsConnect),
		CDW10: uint32(qid) << 16, CDW11: uint32(sqsize), CDW12: katoMS}
	if noSQFlow {
		sqe.CDW11 |= uint32(nvme.CATTRDisableSQFlow) << 16
	}
	cqe, err := q.submit(&sqe, data, true, cfg.DialTimeout)
	if err != nil {
		return 0, fmt.Errorf("%w: connect qid %d: %w", ErrConnect, qid, err)
	}
	if !cqe.Status.OK() {
		err := fmt.Errorf("%w: connect qid %d to %s as %s: %w", ErrConnect, qid, cfg.SubNQN, cfg.HostNQN, cqe.Status)
		if cqe.Status.Code() == nvme.StatusConnectInvalidHost {
			err = fmt.Errorf("%w: %w", ErrHostNotAllowed, err)
		}
		return 0, err
	}
	return uint16(cqe.DW0), nil
}

func property(q *hqueue, set bool, off uint32, size8 bool, val uint64) (uint64, error) {
	sqe := nvme.SQE{Opcode: nvme.OpcodeFabrics, NSID: uint32(nvme.FabricsPropertyGet), CDW11: off}
	if set {
		sqe.NSID = uint32(nvme.FabricsPropertySet)
		sqe.CDW12, sqe.CDW13 = uint32(val), uint32(val>>32)
	}
	if size8 {
		sqe.CDW10 = nvme.PropSize8
	}
	cqe, err := q.submit(&sqe, nil, false, 10*time.Second)
	if err == nil && !cqe.Status.OK() {
		err = cqe.Status
	}
	return cqe.Result64(), err
}

// enableController runs the CC.EN handshake (nvme-tcp-facts §6.3).
func enableController(q *hqueue) error {
	capv, err := property(q, false, nvme.PropCAP, true, 0)
	if err != nil {
		return fmt.Errorf("%w: property get CAP: %w", ErrConnect, err)
	}
	cp := nvme.DecodeCAP(capv)
	cc := uint32(6<<nvme.CCIOSQESShift | 4<<nvme.CCIOCQESShift)
	if cp.CSSIOCS {
		cc |= 6 << nvme.CCCSSShift
	}
	if _, err := property(q, true, nvme.PropCC, false, uint64(cc)); err != nil {
		return fmt.Errorf("%w: property set CC: %w", ErrConnect, err)
	}
	if _, err := property(q, true, nvme.PropCC, false, uint64(cc|nvme.CCEnable)); err != nil {
		return fmt.Errorf("%w: property set CC.EN: %w", ErrConnect, err)
	}
	deadline := time.Now().Add(time.Duration(cp.TO+1) * 500 * time.Millisecond)
	for {
		v, err := property(q, false, nvme.PropCSTS, false, 0)
		csts := uint32(v)
		if err != nil {
			return fmt.Errorf("%w: property get CSTS: %w", ErrConnect, err)
		}
		if csts&nvme.CSTSFatal != 0 {
			return fmt.Errorf("%w: controller fatal status (CSTS %#x)", ErrConnect, csts)
		}
		if csts&nvme.CSTSReady != 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: controller not ready (CSTS %#x)", ErrConnect, csts)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// adminCmd runs an admin command that returns data into buf.
func adminCmd(q *hqueue, sqe *nvme.SQE, buf []byte) error {
	cqe, err := q.submit(sqe, buf, false, 10*time.Second)
	if err == nil && !cqe.Status.OK() {
		err = cqe.Status
	}
	return err
}

// watch sends Keep Alive every KATO/2 and notices connection loss; on loss
// it tears down this generation and reconnects with backoff.
func (d *Device) watch(admin *hqueue, ioqs []*hqueue, gen uint64, kato time.Duration) {
	defer d.wg.Done()
	var tick <-chan time.Time
	if kato > 0 {
		t := time.NewTicker(kato / 2)
		defer t.Stop()
		tick = t.C
	}
	var sweep <-chan time.Time
	period, steps := ioTimeoutClock(d.cfg.IOTimeout)
	if period > 0 {
		t := time.NewTicker(period)
		defer t.Stop()
		sweep = t.C
	}
	lost := make(chan struct{}, 1)
	for _, q := range append([]*hqueue{admin}, ioqs...) {
		d.wg.Add(1)
		go func(q *hqueue) {
			defer d.wg.Done()
			select {
			case <-q.exited:
				select {
				case lost <- struct{}{}:
				default:
				}
			case <-d.closeCh:
			}
		}(q)
	}
	for {
		select {
		case <-d.closeCh:
			return
		case <-lost:
			d.reconnect(gen)
			return
		case <-sweep:
			for _, q := range ioqs {
				if q.expire(steps, d.cfg.IOTimeout) {
					d.log.Warn("I/O command timed out; resetting the connection", "qid", q.qid, "timeout", d.cfg.IOTimeout)
				}
			}
		case <-tick:
			cqe, err := admin.submit(&nvme.SQE{Opcode: nvme.AdminKeepAlive}, nil, false, kato)
			if err == nil && !cqe.Status.OK() {
				err = cqe.Status
			}
			if err != nil {
				d.log.Warn("keep-alive failed", "err", err)
				admin.fail(err)
			}
		}
	}
}

// reconnect replaces a failed association.
func (d *Device) reconnect(gen uint64) {
	d.mu.Lock()
	if d.closed || d.gen != gen {
		d.mu.Unlock()
		return
	}
	admin, ioqs := d.admin, d.ioqs
	d.ready = make(chan struct{})
	d.mu.Unlock()
	for _, q := range ioqs {
		q.close()
	}
	admin.close()
	d.log.Warn("connection lost; reconnecting")
	delay := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-d.closeCh:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := d.connect(ctx, false)
		cancel()
		if err == nil {
			d.log.Info("reconnected")
			return
		}
		if errors.Is(err, ErrClosed) {
			return
		}
		d.log.Debug("reconnect failed", "err", err, "retry_in", delay)
		select {
		case <-d.closeCh:
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// pick returns an I/O queue, waiting for a reconnect if needed.
func (d *Device) pick() (*hqueue, error) {
	for {
		d.mu.Lock()
		closed, ready, ioqs := d.closed, d.ready, d.ioqs
		d.mu.Unlock()
		if closed {
			return nil, blockdev.ErrClosed
		}
		select {
		case <-ready:
			if len(ioqs) == 0 {
				return nil, fmt.Errorf("%w: no I/O queues", blockdev.ErrIO)
			}
			q := ioqs[int(d.rr.Add(1))%len(ioqs)]
			if !q.dead.Load() {
				return q, nil
			}
		default:
		}
		t := time.NewTimer(d.cfg.ReconnectTimeout)
		select {
		case <-ready:
			t.Stop()
			// The queue we saw may be dead while the reconnect has not
			// started yet; yield briefly instead of spinning.
			time.Sleep(time.Millisecond)
		case <-d.closeCh:
			t.Stop()
			return nil, blockdev.ErrClosed
		case <-t.C:
			return nil, fmt.Errorf("%w: not reconnected to %s within %v", blockdev.ErrTimeout, d.cfg.SubNQN, d.cfg.ReconnectTimeout)
		}
	}
}

// do runs one I/O command, retrying it on a new connection if it never
// left the old one.
func (d *Device) do(sqe *nvme.SQE, data []byte, write bool) error {
	for {
		q, err := d.pick()
		if err != nil {
			return err
		}
		sqe.NSID = d.nsid
		cqe, err := q.submit(sqe, data, write, 0)
		switch {
		case errors.Is(err, errQueueDead):
			continue
		case err != nil:
			if d.isClosed() {
				return fmt.Errorf("%w: %w", blockdev.ErrClosed, err)
			}
			return lostErr(err)
		}
		return statusErr(cqe.Status)
	}
}

func (d *Device) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// statusErr maps an NVMe status to a blockdev error (wrapping the status).
func statusErr(s nvme.Status) error {
	switch s.Code() {
	case nvme.StatusSuccess:
		return nil
	case nvme.StatusLBARange:
		return fmt.Errorf("%w: %w", blockdev.ErrOutOfRange, s)
	case nvme.StatusNSWriteProtected:
		return fmt.Errorf("%w: %w", blockdev.ErrReadOnly, s)
	case nvme.StatusCapExceeded:
		return fmt.Errorf("%w: %w", blockdev.ErrNoSpace, s)
	case nvme.StatusTransientTransport:
		return fmt.Errorf("%w: %w", blockdev.ErrTimeout, s)
	}
	return fmt.Errorf("%w: %w", blockdev.ErrIO, s)
}
