package nvmetcp

import "github.com/kura-io/kura/internal/nvme"

// Reservation notifications (NVMe Base 2.0, Reservation Notification log
// page and Reservation Notification Mask). When another host's command
// removes this host's registration (preempt, clear) or releases a
// registrants-only or all-registrants reservation, each of this host's
// controllers queues a log page for the host and, unless one is already
// pending, completes an Asynchronous Event Request (I/O command specific,
// Reservation Log Page Available). Reading the log page takes the oldest
// notification; reading it without RAE re-arms the event. A fenced host
// learns this way that it lost its registration, before its next write
// fails with Reservation Conflict.

// resvLogMax is the number of unread notifications a controller keeps;
// later ones are lost, and the gap in Log Page Count shows it.
const resvLogMax = 64

// resvNotices is a controller's notification state; the controller's mu
// guards it.
type resvNotices struct {
	mask    uint32            // Reservation Notification Mask: types not to log
	log     []nvme.ResvNotice // unread, oldest first
	count   uint64            // Log Page Count of the last notification created
	aenSent bool              // an event was posted and the log not read since without RAE
}

// resvNote is a notification due to the controllers of one host.
type resvNote struct {
	host [16]byte
	typ  uint8
}

// notifyResv delivers notes to the controllers of their hosts.
func (s *subsystem) notifyResv(notes []resvNote) {
	if len(notes) == 0 {
		return
	}
	for _, c := range s.controllers() {
		for _, n := range notes {
			if c.hostID == n.host {
				c.notifyResv(n.typ)
			}
		}
	}
}

// notifyResv queues a notification of type typ unless the host masked it,
// and posts the event if none is outstanding.
func (c *controller) notifyResv(typ uint8) {
	c.mu.Lock()
	r := &c.resv
	if c.dead || r.mask&(1<<typ) != 0 {
		c.mu.Unlock()
		return
	}
	r.count++
	if r.count == 0 { // rolls over to 1: 0 means an empty page
		r.count = 1
	}
	if len(r.log) < resvLogMax {
		r.log = append(r.log, nvme.ResvNotice{Count: r.count, Type: typ, NSID: 1})
	}
	post := !r.aenSent
	r.aenSent = true
	c.mu.Unlock()
	if post {
		c.postAEN(0, nvme.AENResult(nvme.AENTypeIOCmdSpec, nvme.AENResvLogAvail, nvme.LogResvNotice))
	}
}

// takeResvNotice returns the log page: the oldest unread notification,
// which it removes when take is set (a read from offset 0), or an empty
// page. Without rae the event is re-armed.
func (c *controller) takeResvNotice(rae, take bool) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &c.resv
	if !rae {
		r.aenSent = false
	}
	if len(r.log) == 0 {
		return nvme.ResvNotice{}.Marshal()
	}
	n := r.log[0]
	n.Available = uint8(min(len(r.log)-1, 255))
	if take {
		r.log = r.log[1:]
	}
	return n.Marshal()
}
