package nvmetcp

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// deadlineReader is the queue's socket reader. It bounds how long the
// peer may stall in the middle of a PDU without putting a deadline on an
// idle connection, and enters and leaves ring mode (ring.go).
type deadlineReader struct {
	q       *queue
	idle    bool
	armedAt time.Time
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	q := r.q
	s := &q.sock
	if s.socket {
		if q.rq == nil && q.ringWanted() {
			q.openRing()
		}
		for q.rq != nil || s.raw {
			var n int
			var ok bool
			var err error
			if q.rq != nil {
				n, ok, err = q.readRing(p)
			} else {
				n, ok, err = q.readRaw(p, r.idle)
			}
			if ok {
				r.idle = false
				return n, err
			}
		}
	}
	q.as.submit() // queued operations go out before the reader blocks
	if r.idle {
		if !r.armedAt.IsZero() {
			s.nc.SetReadDeadline(time.Time{})
			r.armedAt = time.Time{}
		}
	} else if now := time.Now(); r.armedAt.IsZero() || now.Sub(r.armedAt) > pduTimeout/2 {
		s.nc.SetReadDeadline(now.Add(pduTimeout))
		r.armedAt = now
	}
	n, err := s.nc.Read(p)
	r.idle = false
	return n, err
}

// queue is one TCP connection = one NVMe queue pair.
type queue struct {
	t    *Target
	conn net.Conn // the accepted connection, for its addresses
	sock qsock    // the socket's current mode (sock.go)
	rd   deadlineReader
	br   *bufio.Reader
	dec  *Decoder

	out  *batchWriter // out.mu serialises PDUs on the socket; guards enc, werr, sqhd, dw
	enc  *Encoder
	werr error
	sqhd uint16
	dw   directWriter // the device reaper's non-blocking completion writes (direct.go)

	// Set by the reader during Connect, read-only afterwards.
	qid       uint16
	sqsize    uint16 // 0's based
	sqflowOff bool
	ctrl      *controller
	connected bool

	fmu   sync.Mutex // guards free
	free  []uint16
	slots []slot

	// Buffer budget (TargetConfig.QueueBufferLimit).
	bufBytes  atomic.Int64
	ndeferred atomic.Int32
	dmu       sync.Mutex // guards deferred, dclosed
	deferred  []*slot
	dclosed   bool

	work     chan *slot
	nworkers int // reader only
	idle     atomic.Int32
	inflight atomic.Int32
	wwg      sync.WaitGroup
	as       asyncIO // asynchronous Read/Write path (async.go)
	il       inlineState

	// Ring mode (ring.go), reader only: qo is the namespace device's queue
	// support (nil: none), rq the open queue, ringRetry when to ask qo
	// again after it failed.
	qo        blockdev.QueueOpener
	rq        blockdev.Queue
	ringRetry time.Time
	// ringOn: rq is open (for completeDirect, which may run elsewhere).
	ringOn atomic.Bool

	done chan struct{} // closed when serve has torn the queue down
}

func newQueue(t *Target, c net.Conn) *queue {
	q := &queue{t: t, conn: c, done: make(chan struct{})}
	q.sock.init(c)
	q.rd.q = q
	q.br = bufio.NewReaderSize(&q.rd, 64<<10)
	q.dec = NewDecoder(q.br, true, Limits{MaxICD: maxICD, MaxH2CData: maxTransfer})
	q.out = newBatchWriter(&q.sock)
	q.enc = NewEncoder(q.out)
	q.dw.init(&q.sock)
	q.initSlots(64)
	return q
}

// shutdown stops the connection; the reader then tears the queue down.
// Any goroutine.
func (q *queue) shutdown() { q.sock.shutdown() }

func (q *queue) serve() {
	defer close(q.done)
	log := q.t.log.With("remote", q.conn.RemoteAddr().String())
	err := q.handshake()
	for err == nil {
		q.rd.idle = q.br.Buffered() == 0
		var h Header
		h, err = q.dec.Next()
		if err != nil {
			break
		}
		switch h.Type {
		case TypeCapsuleCmd:
			err = q.onCapsule()
		case TypeH2CData:
			err = q.onH2CData()
		case TypeH2CTermReq:
			tr := q.dec.Term()
			err = errors.New("host sent H2CTermReq")
			log.Warn("host terminated connection", "fes", tr.FES, "fei", tr.FEI)
		default:
			err = q.fatal(fatal(FESSequenceError, 0, "%s not allowed after ICReq", TypeName(h.Type)))
		}
	}
	var fe *FatalError
	if errors.As(err, &fe) {
		q.sendTerm(fe)
		log.Warn("closing connection on PDU error", "qid", q.qid, "err", err)
	} else if IsDataDigestError(err) {
		log.Warn("closing connection on data digest error", "qid", q.qid)
	} else if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		log.Debug("connection ended", "qid", q.qid, "err", err)
	}
	q.shutdown()
	q.closeRing() // reports the ring's I/O; its answers fail on the shut socket
	q.dmu.Lock()
	q.dclosed = true
	q.deferred = nil
	q.dmu.Unlock()
	close(q.work)
	q.wwg.Wait()
	q.as.stop()
	if c := q.ctrl; c != nil {
		if q.qid == 0 {
			c.destroy("admin queue closed")
		} else {
			c.detachIO(q.qid, q)
		}
	}
	q.sock.close()
}

func (q *queue) fatal(fe *FatalError) error { return fe }

func (q *queue) sendTerm(fe *FatalError) {
	q.out.mu.Lock()
	defer q.out.mu.Unlock()
	if q.werr != nil {
		return
	}
	q.sock.setWriteDeadline(time.Now().Add(time.Second))
	if q.enc.WriteTermReq(true, fe.FES, fe.FEI, q.dec.Raw()) == nil {
		q.enc.Flush()
	}
}

// handshake reads ICReq and answers ICResp (NVMe/TCP 1.0 §3.3).
func (q *queue) handshake() error {
	q.sock.nc.SetReadDeadline(time.Now().Add(icrespTimeout))
	h, err := q.dec.Next()
	q.sock.nc.SetReadDeadline(time.Time{})
	if err != nil {
		return err
	}
	if h.Type != TypeICReq {
		return fatal(FESSequenceError, 0, "first PDU is %s, want ICReq", TypeName(h.Type))
	}
	r := q.dec.ICReq()
	if r.PFV != 0 {
		return fatal(FESUnsupportedParm, 8, "ICReq pfv %d", r.PFV)
	}
	if r.HPDA != 0 {
		return fatal(FESUnsupportedParm, 10, "ICReq hpda %d (only 0 supported)", r.HPDA)
	}
	dg := r.Digest & (DigestHeader | DigestData)
	q.out.mu.Lock()
	err = q.enc.WriteICResp(ICResp{Digest: dg, MaxH2CData: maxTransfer})
	if err == nil {
		err = q.enc.Flush()
	}
	q.enc.HDgst, q.enc.DDgst = dg&DigestHeader != 0, dg&DigestData != 0
	q.out.mu.Unlock()
	q.dec.HDgst, q.dec.DDgst = dg&DigestHeader != 0, dg&DigestData != 0
	return err
}

// onCapsule handles a CapsuleCmd.
func (q *queue) onCapsule() error {
	s := q.alloc()
	if s == nil {
		return fatal(FESSequenceError, 0, "more commands outstanding than the queue holds (%d)", len(q.slots))
	}
	q.dec.SQE(&s.sqe)
	icd := q.dec.DataLen()
	if st := q.checkCmd(s, icd); st != nvme.StatusSuccess {
		if err := q.dec.Discard(); err != nil {
			return err
		}
		s.status = st | nvme.StatusDNR
		s.xfer = 0
		q.inflight.Add(1)
		q.as.submit()
		q.complete(s)
		return nil
	}
	if icd > 0 { // at most 16 KiB: always accepted
		q.reserve(s, true)
		s.pb = getBuf(int(s.xfer))
		s.buf = s.pb.b
		if err := q.dec.ReadData(s.buf); err != nil {
			q.release(s)
			return err
		}
		s.rcvd = s.xfer
		return q.ready(s)
	}
	if s.xfer > 0 && !q.reserve(s, false) {
		// Over the queue's buffer budget: start it when memory frees up.
		q.dmu.Lock()
		q.deferred = append(q.deferred, s)
		q.ndeferred.Add(1)
		q.dmu.Unlock()
		q.kick()
		return nil
	}
	if s.xfer > 0 {
		s.pb = getBuf(int(s.xfer))
		s.buf = s.pb.b
	}
	if s.dir == nvme.DirHostToCtrl && s.xfer > 0 {
		q.as.submit() // the R2T's flush may block
		return q.sendR2T(s)
	}
	return q.ready(s)
}

// sendR2T asks the host for the data of s (one R2T for all of it).
func (q *queue) sendR2T(s *slot) error {
	s.waitingH2C.Store(true)
	q.out.mu.Lock()
	err := q.enc.WriteR2T(R2T{CCCID: s.sqe.CID, TTag: s.idx, R2TO: 0, R2TL: s.xfer})
	if err == nil {
		err = q.enc.Flush()
	}
	q.out.mu.Unlock()
	return err
}

// checkCmd validates the data pointer and sets s.dir and s.xfer.
func (q *queue) checkCmd(s *slot, icd int) nvme.Status {
	c := &s.sqe
	if c.Flags&nvme.SQEFlagsPSDTMask != nvme.SQEFlagsPSDTSGL || c.Flags&nvme.SQEFlagsFuseMask != 0 {
		return nvme.StatusInvalidField
	}
	fabrics := c.Opcode == nvme.OpcodeFabrics
	if fabrics {
		s.dir = nvme.FabricsDirection(c.FCType())
	} else {
		s.dir = nvme.Direction(c.Opcode)
	}
	s.xfer = c.SGL.Length
	switch c.SGL.ID {
	case nvme.SGLDataBlockOffset:
		if s.dir != nvme.DirHostToCtrl {
			return nvme.StatusInvalidField
		}
		lim := uint32(maxICD)
		if fabrics || q.qid == 0 {
			lim = 8192
		}
		if c.SGL.Addr != 0 || c.SGL.Length > lim {
			return nvme.StatusSGLInvalidOffset
		}
		if int(c.SGL.Length) != icd {
			return nvme.StatusSGLInvalidLength
		}
	case nvme.SGLTransportDataBlk:
		if icd > 0 {
			return nvme.StatusSGLInvalidType
		}
		if s.xfer > maxTransfer {
			return nvme.StatusSGLInvalidLength
		}
		if s.dir == nvme.DirNone && s.xfer > 0 {
			return nvme.StatusInvalidField
		}
	default:
		return nvme.StatusSGLInvalidType
	}
	return nvme.StatusSuccess
}

// onH2CData handles data answering an R2T (NVMe/TCP 1.0 §3.6.2.6).
func (q *queue) onH2CData() error {
	dh := q.dec.Data()
	if int(dh.TTag) >= len(q.slots) {
		return fatal(FESInvalidHeader, 10, "H2CData ttag %d unknown", dh.TTag)
	}
	s := &q.slots[dh.TTag]
	if !s.waitingH2C.Load() || s.sqe.CID != dh.CCCID {
		return fatal(FESSequenceError, 0, "H2CData for cid %#x ttag %d without an outstanding R2T", dh.CCCID, dh.TTag)
	}
	n := uint32(q.dec.DataLen())
	if dh.DataL != n {
		return fatal(FESInvalidHeader, 16, "H2CData datal %d but PDU carries %d bytes", dh.DataL, n)
	}
	if dh.DataO != s.rcvd || n > s.xfer-s.rcvd {
		return fatal(FESDataOutOfRange, 0, "H2CData offset %d len %d; expected offset %d of %d", dh.DataO, n, s.rcvd, s.xfer)
	}
	if err := q.dec.ReadData(s.buf[dh.DataO : dh.DataO+n]); err != nil {
		return err
	}
	s.rcvd += n
	if s.rcvd < s.xfer {
		return nil
	}
	s.waitingH2C.Store(false)
	return q.ready(s)
}

// ready runs a command whose data has arrived.
func (q *queue) ready(s *slot) error {
	q.inflight.Add(1)
	if !q.connected {
		if s.sqe.Opcode != nvme.OpcodeFabrics || s.sqe.FCType() != nvme.FabricsConnect {
			s.status = nvme.StatusCmdSeqError | nvme.StatusDNR
			q.complete(s)
			return nil
		}
		q.t.connect(q, s)
		q.complete(s)
		if q.connected && len(q.slots) < 2*(int(q.sqsize)+1) && q.inflight.Load() == 0 {
			q.initSlots(2 * (int(q.sqsize) + 1))
		}
		return nil
	}
	if q.qid == 0 {
		q.exec(s)
		return nil
	}
	if q.inlineOK() {
		q.as.submit()
		q.execInline(s)
		return nil
	}
	if q.startAsync(s) {
		return nil
	}
	if q.idle.Load() == 0 && q.nworkers < q.t.cfg.WorkersPerQueue {
		q.nworkers++
		q.wwg.Add(1)
		go q.worker()
	}
	q.work <- s
	return nil
}

func (q *queue) worker() {
	defer q.wwg.Done()
	for {
		q.idle.Add(1)
		s, ok := <-q.work
		q.idle.Add(-1)
		if !ok {
			return
		}
		q.exec(s)
	}
}

// exec runs a command and completes it unless it is held (AER). A panic
// in a device is contained: the command fails with Internal Error.
func (q *queue) exec(s *slot) {
	var held bool
	defer func() {
		if r := recover(); r != nil {
			q.t.log.Error("panic while executing command", "opcode", s.sqe.Opcode, "qid", q.qid, "panic", r, "stack", string(debug.Stack()))
			s.status, s.c2h = nvme.StatusInternal|nvme.StatusDNR, 0
			q.complete(s)
		}
	}()
	switch {
	case s.sqe.Opcode == nvme.OpcodeFabrics:
		q.execFabrics(s)
	case q.qid == 0:
		held = q.ctrl.execAdmin(s)
	default:
		q.ctrl.execIO(s)
	}
	if held {
		return
	}
	disconnect := s.sqe.Opcode == nvme.OpcodeFabrics && s.sqe.FCType() == nvme.FabricsDisconnect && s.status.OK()
	q.complete(s)
	if disconnect {
		q.shutdown()
	}
}
