package nvmetcp

import (
	"sync"
	"time"

	"github.com/kura-io/kura/internal/nvme"
)

// maxIOQueues is the number of I/O queues a controller grants at most.
const maxIOQueues = 64

// aerLimit is AERL+1: outstanding Asynchronous Event Requests per controller.
const aerLimit = 4

// controller is one NVMe controller: the admin queue plus its I/O queues,
// all from one host. Its state methods are synchronous and need no socket.
type controller struct {
	s       *subsystem
	id      uint16
	hostNQN string
	hostID  [16]byte

	mu        sync.Mutex // guards everything below
	cc, csts  uint32
	kato      time.Duration // 0: no keep-alive
	nrIOQ     uint16        // granted I/O queues
	aec       uint32
	aers      []*slot // outstanding AERs (admin queue slots)
	pending   []uint32
	adminQ    *queue
	ioQ       map[uint16]*queue
	kaTimer   *time.Timer
	dead      bool
	wce       bool
	lastError nvme.Status
	resv      resvNotices // Reservation Notification log (resvnotice.go)
}

func newController(s *subsystem, id uint16, hostNQN string, hostID [16]byte) *controller {
	return &controller{s: s, id: id, hostNQN: hostNQN, hostID: hostID, nrIOQ: maxIOQueues,
		ioQ: map[uint16]*queue{}, wce: true}
}

func (c *controller) info() ControllerInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ControllerInfo{CNTLID: c.id, HostNQN: c.hostNQN, IOQueues: len(c.ioQ)}
}

func (c *controller) ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.csts&nvme.CSTSReady != 0
}

// startKeepAlive arms the keep-alive timer (KATO plus a grace period).
func (c *controller) startKeepAlive(kato time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kato = kato
	if kato <= 0 || c.dead {
		return
	}
	c.kaTimer = time.AfterFunc(kaDeadline(kato), func() {
		c.s.t.log.Warn("keep-alive timer expired; deleting controller", "nqn", c.s.nqn, "cntlid", c.id, "host", c.hostNQN, "kato", c.kato)
		c.destroy("keep-alive timeout")
	})
}

// kaDeadline is how long the target waits for a Keep Alive: KATO rounded
// up to the KAS granularity (1 s, like nvmet) plus a 500 ms grace.
func kaDeadline(kato time.Duration) time.Duration {
	return (kato+time.Second-1)/time.Second*time.Second + 500*time.Millisecond
}

func (c *controller) keepAlive() {
	c.mu.Lock()
	if c.kaTimer != nil && !c.dead {
		c.kaTimer.Reset(kaDeadline(c.kato))
	}
	c.mu.Unlock()
}

func (c *controller) setKATO(kato time.Duration) {
	c.mu.Lock()
	c.kato = kato
	t := c.kaTimer
	c.mu.Unlock()
	if t != nil && kato > 0 {
		t.Reset(kaDeadline(kato))
	} else if t != nil {
		t.Stop()
	} else if kato > 0 {
		c.startKeepAlive(kato)
	}
}

// attachIO registers an I/O queue; false if the QID is already connected.
func (c *controller) attachIO(qid uint16, q *queue) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead || c.ioQ[qid] != nil {
		return false
	}
	c.ioQ[qid] = q
	return true
}

func (c *controller) detachIO(qid uint16, q *queue) {
	c.mu.Lock()
	if c.ioQ[qid] == q {
		delete(c.ioQ, qid)
	}
	c.mu.Unlock()
}

// destroy deletes the controller: fails outstanding AERs with Internal
// Error|DNR, closes every queue and forgets the controller. Idempotent. It
// returns the queues it closed (their done channels tell when their I/O
// has drained).
func (c *controller) destroy(reason string) []*queue {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return nil
	}
	c.dead = true
	c.csts |= nvme.CSTSFatal
	if c.kaTimer != nil {
		c.kaTimer.Stop()
	}
	aers := c.aers
	c.aers = nil
	qs := make([]*queue, 0, len(c.ioQ)+1)
	for _, q := range c.ioQ {
		qs = append(qs, q)
	}
	if c.adminQ != nil {
		qs = append(qs, c.adminQ)
	}
	c.mu.Unlock()
	c.s.forget(c)
	for _, a := range aers {
		a.status = nvme.StatusInternal | nvme.StatusDNR
		a.q.complete(a)
	}
	for _, q := range qs {
		q.shutdown()
	}
	c.s.t.log.Debug("controller deleted", "nqn", c.s.nqn, "cntlid", c.id, "reason", reason)
	return qs
}

// addAER holds an Asynchronous Event Request. It returns false (and sets
// the status) when the request completes at once.
func (c *controller) addAER(s *slot) (held bool) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		s.dw0 = c.pending[0]
		c.pending = c.pending[1:]
		c.mu.Unlock()
		return false
	}
	if len(c.aers) >= aerLimit {
		c.mu.Unlock()
		s.status = nvme.StatusAERLimitExceeded | nvme.StatusDNR
		return false
	}
	c.aers = append(c.aers, s)
	c.mu.Unlock()
	return true
}

// postAEN completes an outstanding AER with result, or latches it, if the
// host enabled the event class aecBit (0: an event no AEC bit gates, such
// as Reservation Log Page Available).
func (c *controller) postAEN(aecBit, result uint32) {
	c.mu.Lock()
	if c.dead || aecBit != 0 && c.aec&aecBit == 0 {
		c.mu.Unlock()
		return
	}
	if len(c.aers) == 0 {
		for _, p := range c.pending {
			if p == result {
				c.mu.Unlock()
				return
			}
		}
		c.pending = append(c.pending, result)
		c.mu.Unlock()
		return
	}
	a := c.aers[0]
	c.aers = c.aers[1:]
	c.mu.Unlock()
	a.dw0 = result
	a.status = nvme.StatusSuccess
	a.q.complete(a)
}
