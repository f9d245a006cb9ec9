package nvmetcp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// errQueueDead means the connection failed before the command was sent;
// the caller may retry it on a new connection.
var errQueueDead = errors.New("nvmetcp: queue connection lost")

// hreq is one command slot of a host queue; its index is the CID.
type hreq struct {
	sqe      nvme.SQE
	data     []byte // read destination or write source
	write    bool
	inflight atomic.Bool
	sent     atomic.Uint32 // the queue's clock when the command was sent (I/O timeout)
	recvd    int
	cqe      nvme.CQE
	err      error
	done     chan struct{}         // capacity 1, reused
	cb       blockdev.IOCompletion // set for asynchronous commands (StartQueued)
}

// hqueue is the host side of one NVMe/TCP connection (one queue pair).
type hqueue struct {
	qid    uint16
	conn   net.Conn
	br     *bufio.Reader
	dec    *Decoder
	icdMax int // largest write sent as in-capsule data
	h2cMax int // MAXH2CDATA of the controller

	out *batchWriter // out.mu guards enc
	enc *Encoder

	reqs    []hreq
	free    chan uint16
	dead    atomic.Bool
	deadErr atomic.Value // error
	closing atomic.Bool
	exited  chan struct{}
	// clock counts the I/O-timeout sweeps of this queue (Device.watch).
	clock atomic.Uint32

	flushq []blockdev.IOCompletion // completions awaiting IOFlush (read loop only)
}

// dialQueue opens a TCP connection and runs ICReq/ICResp.
func dialQueue(ctx context.Context, cfg *Config, qid uint16, entries int) (*hqueue, error) {
	var dl net.Dialer
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	conn, err := dl.DialContext(dctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", ErrConnect, cfg.Addr, err)
	}
	q := &hqueue{qid: qid, conn: conn, exited: make(chan struct{})}
	q.br = bufio.NewReaderSize(conn, 64<<10)
	q.dec = NewDecoder(q.br, false, Limits{MaxC2HData: maxTransfer})
	q.out = newBatchWriter(conn)
	q.enc = NewEncoder(q.out)
	var dg uint8
	if cfg.HeaderDigest {
		dg |= DigestHeader
	}
	if cfg.DataDigest {
		dg |= DigestData
	}
	deadline := time.Now().Add(cfg.DialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	q.out.mu.Lock()
	err = q.enc.WriteICReq(ICReq{Digest: dg})
	if err == nil {
		err = q.enc.Flush()
	}
	q.out.mu.Unlock()
	var h Header
	if err == nil {
		h, err = q.dec.Next()
	}
	if err == nil && h.Type != TypeICResp {
		err = fmt.Errorf("got %s instead of ICResp", TypeName(h.Type))
	}
	if err == nil {
		r := q.dec.ICResp()
		switch {
		case r.PFV != 0:
			err = fmt.Errorf("ICResp pfv %d", r.PFV)
		case r.CPDA != 0:
			err = fmt.Errorf("ICResp cpda %d unsupported", r.CPDA)
		case r.Digest != dg:
			err = fmt.Errorf("ICResp digests %#x, asked for %#x", r.Digest, dg)
		case r.MaxH2CData < 4096 || r.MaxH2CData%4 != 0:
			err = fmt.Errorf("ICResp maxh2cdata %d invalid", r.MaxH2CData)
		}
		q.h2cMax = int(min(r.MaxH2CData, maxTransfer))
	}
	conn.SetDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrConnect, cfg.Addr, err)
	}
	q.enc.HDgst, q.enc.DDgst = cfg.HeaderDigest, cfg.DataDigest
	q.dec.HDgst, q.dec.DDgst = cfg.HeaderDigest, cfg.DataDigest
	q.icdMax = 8192 // fabrics/admin limit until Identify says otherwise
	q.reqs = make([]hreq, entries)
	q.free = make(chan uint16, entries)
	for i := range q.reqs {
		q.reqs[i].done = make(chan struct{}, 1)
		if i < entries-1 { // at most SQSIZE outstanding
			q.free <- uint16(i)
		}
	}
	go q.readLoop()
	return q, nil
}

// close tears the connection down; outstanding commands fail.
func (q *hqueue) close() {
	q.closing.Store(true)
	q.conn.Close()
	<-q.exited
}

func (q *hqueue) fail(err error) {
	if q.dead.CompareAndSwap(false, true) {
		q.deadErr.Store(err)
	}
	q.conn.Close()
}

func (q *hqueue) err() error {
	if e, ok := q.deadErr.Load().(error); ok {
		return e
	}
	return errQueueDead
}

func (q *hqueue) readLoop() {
	defer close(q.exited)
	err := q.readPDUs()
	q.deliverFlush()
	q.fail(err)
	err = q.err() // the first failure: an I/O timeout if that reset the queue
	for i := range q.reqs {
		q.finish(&q.reqs[i], nvme.CQE{}, fmt.Errorf("%w: %w", errInFlightLost, err))
	}
	q.deliverFlush()
}

var errInFlightLost = errors.New("nvmetcp: connection lost with command in flight")

func (q *hqueue) req(cid uint16) *hreq {
	if int(cid) >= len(q.reqs) || !q.reqs[cid].inflight.Load() {
		return nil
	}
	return &q.reqs[cid]
}

func (q *hqueue) readPDUs() error {
	for {
		if len(q.flushq) > 0 && (q.br.Buffered() == 0 || len(q.flushq) >= maxFlushBatch) {
			q.deliverFlush()
		}
		h, err := q.dec.Next()
		if err != nil {
			return err
		}
		switch h.Type {
		case TypeCapsuleRsp:
			var cqe nvme.CQE
			q.dec.CQE(&cqe)
			r := q.req(cqe.CID)
			if r == nil {
				return fmt.Errorf("nvmetcp: response for unknown cid %#x", cqe.CID)
			}
			q.finish(r, cqe, nil)
		case TypeC2HData:
			dh := q.dec.Data()
			r := q.req(dh.CCCID)
			n := q.dec.DataLen()
			if r == nil || r.write || int(dh.DataO) != r.recvd || int(dh.DataL) != n || n > len(r.data)-r.recvd {
				return fmt.Errorf("nvmetcp: bad C2HData cid %#x offset %d len %d", dh.CCCID, dh.DataO, dh.DataL)
			}
			if err := q.dec.ReadData(r.data[dh.DataO : int(dh.DataO)+n]); err != nil {
				return err
			}
			r.recvd += n
			if h.Flags&FlagSuccess != 0 {
				if h.Flags&FlagLast == 0 {
					return fmt.Errorf("nvmetcp: C2HData SUCCESS without LAST_PDU")
				}
				q.finish(r, nvme.CQE{CID: dh.CCCID}, nil)
			}
		case TypeR2T:
			t := q.dec.R2T()
			r := q.req(t.CCCID)
			if r == nil || !r.write || t.R2TL == 0 || int(t.R2TO) != r.recvd || int(t.R2TO)+int(t.R2TL) > len(r.data) {
				return fmt.Errorf("nvmetcp: bad R2T cid %#x offset %d len %d", t.CCCID, t.R2TO, t.R2TL)
			}
			if err := q.sendH2C(r, t); err != nil {
				return err
			}
		case TypeC2HTermReq:
			tr := q.dec.Term()
			return fmt.Errorf("nvmetcp: controller terminated the connection (fes %#x fei %d)", tr.FES, tr.FEI)
		default:
			return fmt.Errorf("nvmetcp: unexpected %s", TypeName(h.Type))
		}
	}
}

func (q *hqueue) sendH2C(r *hreq, t R2T) error {
	q.out.mu.Lock()
	defer q.out.mu.Unlock()
	end := int(t.R2TO + t.R2TL)
	for off := int(t.R2TO); off < end; {
		n := min(end-off, q.h2cMax)
		if err := q.enc.WriteH2CData(t.CCCID, t.TTag, uint32(off), r.data[off:off+n], off+n == end); err != nil {
			return err
		}
		off += n
	}
	r.recvd = end
	return q.enc.Flush()
}

func (q *hqueue) finish(r *hreq, cqe nvme.CQE, err error) {
	if !r.inflight.CompareAndSwap(true, false) {
		return
	}
	if r.cb != nil {
		q.finishAsync(r, cqe, err)
		return
	}
	r.cqe, r.err = cqe, err
	r.done <- struct{}{}
}

// submit sends a command and waits for its completion. data is the read
// destination (C2H) or write source (H2C). timeout 0 waits for ever (the
// connection's keep-alive bounds it). A command that never left returns
// errQueueDead; one lost in flight returns errInFlightLost.
func (q *hqueue) submit(sqe *nvme.SQE, data []byte, write bool, timeout time.Duration) (nvme.CQE, error) {
	var cid uint16
	select {
	case cid = <-q.free:
	case <-q.exited:
		return nvme.CQE{}, errQueueDead
	}
	r := &q.reqs[cid]
	defer func() { q.free <- cid }()
	r.sqe = *sqe
	r.sqe.CID = cid
	q.attach(r, data, write)
	r.sent.Store(q.clock.Load())
	r.inflight.Store(true)
	if q.dead.Load() {
		if r.inflight.CompareAndSwap(true, false) {
			return nvme.CQE{}, errQueueDead
		}
		<-r.done
		return r.cqe, r.err
	}
	q.out.mu.Lock()
	err := q.encode(r)
	if err == nil && len(q.free) < cap(q.free)-2 {
		// Other commands are in flight, so submitters woken by the same
		// batch of completions are probably runnable: let them append
		// first, and the first to return flushes them all in one write.
		q.out.mu.Unlock()
		runtime.Gosched()
		q.out.mu.Lock()
	}
	if err == nil {
		err = q.enc.Flush()
	}
	q.out.mu.Unlock()
	if err != nil {
		q.fail(err)
	}
	if timeout > 0 {
		t := time.NewTimer(timeout)
		select {
		case <-r.done:
			t.Stop()
		case <-t.C:
			q.fail(fmt.Errorf("nvmetcp: command opcode %#x timed out after %v", sqe.Opcode, timeout))
			<-r.done
		}
	} else {
		<-r.done
	}
	if r.err != nil {
		return r.cqe, r.err
	}
	if !r.write && r.recvd != len(data) && r.cqe.Status.OK() {
		return r.cqe, fmt.Errorf("nvmetcp: short read: %d of %d bytes", r.recvd, len(data))
	}
	return r.cqe, nil
}

// attach sets r's data buffer and the SGL describing it: in-capsule for
// writes up to icdMax, else transferred with C2HData or R2T/H2CData.
func (q *hqueue) attach(r *hreq, data []byte, write bool) {
	r.sqe.Flags = nvme.SQEFlagsPSDTSGL
	r.data, r.write, r.recvd = data, write, 0
	if q.inCapsule(r) {
		r.sqe.SGL = nvme.SGL{ID: nvme.SGLDataBlockOffset, Length: uint32(len(data))}
	} else {
		r.sqe.SGL = nvme.SGL{ID: nvme.SGLTransportDataBlk, Length: uint32(len(data))}
	}
}

func (q *hqueue) inCapsule(r *hreq) bool {
	return r.write && len(r.data) > 0 && len(r.data) <= q.icdMax
}

// encode appends r's command capsule (with in-capsule data) to the batch
// writer. Caller holds q.out.mu.
func (q *hqueue) encode(r *hreq) error {
	if q.inCapsule(r) {
		return q.enc.WriteCapsuleCmd(&r.sqe, r.data)
	}
	return q.enc.WriteCapsuleCmd(&r.sqe, nil)
}
