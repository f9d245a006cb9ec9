package nvmetcp

import (
	"sync/atomic"

	"github.com/kura-io/kura/internal/nvme"
)

// slot is one command in flight on a queue. Slots are preallocated per
// queue; the slot index is the R2T transfer tag.
type slot struct {
	q          *queue
	idx        uint16
	busy       bool
	waitingH2C atomic.Bool // an R2T is outstanding (set before it is sent)
	reserved   bool        // xfer bytes are counted in queue.bufBytes
	sqe        nvme.SQE
	dir        nvme.DataDirection
	xfer       uint32 // SGL length
	rcvd       uint32 // H2C bytes received
	pb         *pbuf
	buf        []byte // len xfer
	// results
	status   nvme.Status
	dw0, dw1 uint32
	c2h      uint32 // bytes of buf to send back with C2HData
}

func (s *slot) reset() {
	s.waitingH2C.Store(false)
	s.reserved, s.xfer, s.rcvd, s.buf = false, 0, 0, nil
	s.status, s.dw0, s.dw1, s.c2h = 0, 0, 0, 0
}

func (q *queue) initSlots(n int) {
	q.slots = make([]slot, n)
	q.free = make([]uint16, 0, n)
	for i := n - 1; i >= 0; i-- {
		q.slots[i] = slot{q: q, idx: uint16(i)}
		q.free = append(q.free, uint16(i))
	}
	q.work = make(chan *slot, n)
}

func (q *queue) alloc() *slot {
	q.fmu.Lock()
	defer q.fmu.Unlock()
	n := len(q.free)
	if n == 0 {
		return nil
	}
	s := &q.slots[q.free[n-1]]
	q.free = q.free[:n-1]
	s.busy = true
	s.reset()
	return s
}

func (q *queue) release(s *slot) {
	if q.releaseSlot(s) {
		q.kick()
	}
}

// releaseSlot frees s and its buffer. It returns true when deferred
// commands wait for the buffer budget it returned: the caller kicks them.
func (q *queue) releaseSlot(s *slot) (kick bool) {
	putBuf(s.pb)
	s.pb, s.buf = nil, nil
	reserved := s.reserved
	if reserved {
		q.bufBytes.Add(-int64(s.xfer))
		s.reserved = false
	}
	q.fmu.Lock()
	s.busy = false
	q.free = append(q.free, s.idx)
	q.fmu.Unlock()
	return reserved && q.ndeferred.Load() > 0
}

// reserve counts s.xfer against the queue's buffer budget. It fails when
// the budget would be exceeded while other buffers are outstanding (a
// single command may always proceed), unless force is set.
func (q *queue) reserve(s *slot, force bool) bool {
	n := int64(s.xfer)
	total := q.bufBytes.Add(n)
	if !force && total > q.t.cfg.QueueBufferLimit && total != n {
		q.bufBytes.Add(-n)
		return false
	}
	s.reserved = true
	return true
}

// kick starts deferred commands while the budget allows. Called by the
// reader after deferring and by whoever releases a buffer. Deferred reads
// run in the calling goroutine; deferred writes get their R2T.
func (q *queue) kick() {
	for q.ndeferred.Load() > 0 {
		q.dmu.Lock()
		if q.dclosed || len(q.deferred) == 0 {
			q.dmu.Unlock()
			return
		}
		s := q.deferred[0]
		if !q.reserve(s, false) {
			q.dmu.Unlock()
			return
		}
		q.deferred = q.deferred[1:]
		q.ndeferred.Add(-1)
		q.dmu.Unlock()
		s.pb = getBuf(int(s.xfer))
		s.buf = s.pb.b
		if s.dir == nvme.DirHostToCtrl {
			if q.sendR2T(s) != nil {
				q.shutdown()
			}
			continue
		}
		q.inflight.Add(1)
		q.exec(s)
	}
}
