package nbd

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

const (
	// numSlots bounds the requests in flight per connection (the Linux
	// client's queue depth is 128).
	numSlots = 128
	// readBufSize and writeBufSize size the per-connection socket buffers.
	readBufSize  = 64 << 10
	writeBufSize = 128 << 10
	// drainTimeout bounds how long a shut-down connection may spend
	// writing the replies of its in-flight requests.
	drainTimeout = 2 * time.Second
	// fastDeviceNs: while inline requests average below this, the reader
	// keeps executing requests inline even when more are buffered (a
	// goroutine handoff would cost more than the I/O).
	fastDeviceNs = 15_000
	// pipeScale is the fixed-point scale of conn.pipelined; pipeLimit is
	// the level (a quarter) above which slow requests stop running inline.
	pipeScale = 256
	pipeLimit = pipeScale / 4
)

// asyncDevice is a device that can start reads and writes without
// blocking the caller (blockdev.Uring).
type asyncDevice interface {
	// StartQueued queues the I/O; Submit hands everything queued to the
	// kernel. The reader submits before it could block, so requests that
	// arrive together are submitted together.
	StartQueued(write bool, p []byte, off int64, cb blockdev.IOCompletion) bool
	Submit()
}

// conn is one client connection. The reader goroutine (serve) owns br,
// neg and the slot it is filling; workers own the slots handed to them.
type conn struct {
	srv  *Server
	sock sock // the socket: netpoll or raw mode (sock.go)
	addr netip.Addr
	log  *slog.Logger
	done chan struct{} // closed after serve returned and c was unregistered

	br  *bufio.Reader
	neg negotiation
	exp *export // set by Server.attach under Server.mu, then read-only

	// Transmission state, fixed once the export is chosen.
	dev        blockdev.Device
	size       uint64
	minBlock   uint64
	readOnly   bool
	structured bool
	// blockStatusOn: base:allocation was selected for this export.
	blockStatusOn bool

	async    asyncDevice // devAsync, or q in ring mode (reader only)
	devAsync asyncDevice // dev, when it can run reads and writes asynchronously
	queuedIO bool        // async I/O queued but not submitted (reader only)
	// Ring mode (ring.go), reader only: qo is dev's queue support (nil:
	// none), q the open queue (nil outside ring mode), ringRetry when to
	// ask qo again after it failed.
	qo        blockdev.QueueOpener
	q         blockdev.Queue
	ringRetry time.Time
	ringOn    atomic.Bool // q is open (read by replyDirect on any goroutine)

	// Asynchronous completions: IODone appends to doneQ, IOFlush wakes the
	// replier goroutine, which answers them (only when async != nil).
	doneMu      sync.Mutex // guards doneQ
	doneQ       []*request
	doneBuf     []*request // the replier's half of the double buffer
	doneWake    chan struct{}
	replierDone chan struct{}
	free        chan *request // idle slots
	work        chan *request // slots for the workers
	workers     int           // workers started (reader only)
	idle        atomic.Int32  // workers waiting for work
	inflight    atomic.Int32  // slots handed to workers and not yet answered
	budget      budget        // large payload bytes in flight
	wg          sync.WaitGroup

	// ewmaNs is the moving average of inline request latency; below
	// fastNs (Server.fastNs, normally fastDeviceNs) the device counts as
	// fast (reader only).
	ewmaNs int64
	fastNs int64
	// pipelined is the moving average (times pipeScale) of evidence that
	// the client sends requests without waiting for replies: a request
	// arriving while others are in flight, or the next request already
	// waiting when an inline request on a slow device finishes. Above
	// pipeLimit the reader stops executing slow requests inline, so a
	// client with several requests in flight gets them overlapped even
	// when each arrives alone (large writes fill one socket read each).
	pipelined int64
	// perFill is the moving average of requests decoded per socket read,
	// times perFillScale; fillReqs counts them since the last read
	// (reader only; see pollFirst).
	perFill  int64
	fillReqs int64

	queued atomic.Int32 // replies waiting for wmu; the last one flushes
	dirty  atomic.Bool  // replies appended but not flushed (reader deferred)
	// wmu guards bw, werr, direct, pending and every write to the socket
	// in transmission; the reader also holds it (with sock.mu) to switch
	// the socket's mode. Held for buffer appends, flushes and socket
	// writes, never across device I/O.
	wmu    sync.Mutex
	bw     *bufio.Writer
	werr   error
	direct directWriter // replies written from the completing goroutine (under wmu)
	// pending is the unsent tail of a direct write (under wmu): it goes out
	// before any other byte (drainPending).
	pending []byte

	closing atomic.Bool
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		srv:  s,
		done: make(chan struct{}),
	}
	c.sock.init(nc)
	c.bw = bufio.NewWriterSize(connWriter{c}, writeBufSize)
	c.br = bufio.NewReaderSize(&pollReader{c: c}, readBufSize)
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.addr = ta.AddrPort().Addr().Unmap()
	}
	c.log = s.log.With("remote", nc.RemoteAddr().String())
	return c
}

// shutdown asks the connection to end: reads stop at once, in-flight
// requests finish and their replies get drainTimeout to be written.
func (c *conn) shutdown() {
	if c.closing.Swap(true) {
		return
	}
	c.sock.shutdownRead(time.Now().Add(drainTimeout))
}

// abort stops the socket at once (after a write error).
func (c *conn) abort() {
	c.closing.Store(true)
	c.sock.abort()
}

// serve runs the connection to its end and closes the socket.
func (c *conn) serve() {
	defer func() {
		if c.sock.close() {
			c.srv.rawConns.Add(-1)
		}
	}()
	// Netpoll mode until transmission (only the reader switches modes).
	_ = c.sock.nc.SetDeadline(time.Now().Add(c.srv.cfg.HandshakeTimeout))
	e, err := c.negotiate()
	if err != nil {
		c.logEnd("nbd negotiation ended", err)
		return
	}
	if !c.srv.attach(c, e) {
		c.log.Info("nbd export went away during negotiation", "export", e.name)
		return
	}
	if c.closing.Load() {
		return
	}
	_ = c.sock.nc.SetDeadline(time.Time{})
	c.log.Debug("nbd client attached", "export", e.name, "structured", c.neg.structured)
	err = c.transmit(e)
	c.logEnd("nbd client disconnected", err)
}

func (c *conn) logEnd(msg string, err error) {
	switch {
	case err == nil, errors.Is(err, errAbort), errors.Is(err, io.EOF), c.closing.Load():
		c.log.Debug(msg, "err", err)
	case errors.Is(err, errProtocol):
		c.log.Warn(msg, "err", err)
	default:
		c.log.Info(msg, "err", err)
	}
}

// transmit serves requests for export e until the client disconnects or
// the connection is shut down, then drains in-flight requests. One reader
// (this goroutine) decodes requests into preallocated slots. While no
// request is with a worker, a request runs inline on the reader and is
// answered directly if nothing else is buffered and the client does not
// pipeline (lowest QD1 latency; see conn.pipelined) or if the device is
// fast (inline average below fastDeviceNs, where a handoff costs more
// than the I/O). Otherwise it goes to a bounded, lazily started
// set of workers so slow I/O overlaps.
func (c *conn) transmit(e *export) error {
	c.dev = e.dev
	c.size = uint64(e.dev.Size())
	c.minBlock = uint64(e.dev.BlockSize())
	c.readOnly = e.opts.ReadOnly
	c.structured = c.neg.structured
	c.blockStatusOn = c.neg.blockStatus
	c.neg.metaExp = nil
	c.neg.buf = nil
	c.fastNs = c.srv.fastNs.Load()

	slots := make([]request, numSlots)
	c.free = make(chan *request, numSlots)
	c.work = make(chan *request, numSlots)
	c.async, _ = e.dev.(asyncDevice)
	if c.async != nil {
		c.doneQ = make([]*request, 0, numSlots)
		c.doneBuf = make([]*request, 0, numSlots)
		c.doneWake = make(chan struct{}, 1)
		c.replierDone = make(chan struct{})
		go c.replier()
		c.devAsync = c.async
		c.qo = queueOpener(e.dev)
	}
	for i := range slots {
		slots[i].c = c
		c.free <- &slots[i]
	}
	var err error
	for {
		var r *request
		select {
		case r = <-c.free:
		default: // every slot is in flight: queued I/O must go out first
			c.beforeBlock()
			r = c.nextFree()
		}
		if err = c.readRequest(r); err != nil {
			c.finish(r)
			break
		}
		if r.typ == cmdDisc {
			c.finish(r)
			break
		}
		busy := c.inflight.Load() > 0
		c.notePipelined(busy)
		if c.q != nil && c.startAsync(r) {
			continue // ring mode: even alone, the queue is the shorter way
		}
		if !busy && (c.ewmaNs < c.fastNs || c.br.Buffered() == 0 && c.pipelined < pipeLimit) {
			c.processInline(r)
			continue
		}
		if c.async != nil && c.startAsync(r) {
			continue
		}
		c.dispatch(r)
	}
	c.submitQueued()
	c.closeRing()
	close(c.work)
	c.wg.Wait()
	if c.async != nil {
		close(c.doneWake) // every IOFlush has run; the replier drains and exits
		<-c.replierDone
	}
	c.wmu.Lock()
	if c.werr == nil {
		c.werr = c.drainPending()
	}
	if c.werr == nil {
		c.werr = c.bw.Flush()
	}
	c.wmu.Unlock()
	for i := range slots {
		if slots[i].bufp != nil {
			putBuf(slots[i].bufp)
			slots[i].bufp = nil
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) && c.closing.Load() {
		return nil
	}
	return err
}

// process executes one request on a worker, answers it and frees its slot.
func (c *conn) process(r *request) {
	code := c.execute(r)
	c.reply(r, code, true)
	c.finish(r)
}

// finish returns r's budget, large buffer and slot.
func (c *conn) finish(r *request) {
	if r.charged > 0 {
		c.budget.release(r.charged)
		r.charged = 0
	}
	r.release()
	c.free <- r
}

// processInline executes a request on the reader. The reply is flushed
// unless another request is already buffered (then the next blocking read
// flushes), and the device latency feeds the inline/worker decision.
func (c *conn) processInline(r *request) {
	start := time.Now()
	code := c.execute(r)
	d := int64(time.Since(start))
	c.ewmaNs += (d - c.ewmaNs) / 8
	if d >= c.fastNs {
		// Did the client send more before this reply? A queue-depth-1
		// client cannot have.
		c.notePipelined(c.br.Buffered() > 0 || c.sock.queued())
	}
	c.reply(r, code, c.br.Buffered() < requestHeaderLen)
	c.finish(r)
}

// notePipelined folds one observation into c.pipelined (reader only).
func (c *conn) notePipelined(ahead bool) {
	var x int64
	if ahead {
		x = pipeScale
	}
	c.pipelined += (x - c.pipelined) / 8
}

// dispatch hands r to a worker, starting one if none is idle and the
// limit allows.
func (c *conn) dispatch(r *request) {
	c.inflight.Add(1)
	if c.idle.Load() == 0 && c.workers < c.srv.cfg.MaxWorkers {
		c.workers++
		c.srv.workerStarts.Add(1)
		c.wg.Add(1)
		go c.worker()
	}
	c.work <- r // never blocks: capacity equals the number of slots
}

// worker processes dispatched requests until the reader closes c.work.
func (c *conn) worker() {
	defer c.wg.Done()
	for {
		c.idle.Add(1)
		r, ok := <-c.work
		c.idle.Add(-1)
		if !ok {
			return
		}
		c.process(r)
		c.inflight.Add(-1)
	}
}
