package nvmetcp

import (
	"context"
	"log/slog"

	"github.com/kura-io/kura/internal/nvme"
)

// Asynchronous events on the initiator side. Every association keeps one
// Asynchronous Event Request outstanding on its admin queue, as the Linux
// host does. When the target completes it, the events goroutine reads the
// log page the event names (which re-arms that event class on the
// target), records and logs what it says, hands it to Config.OnEvent, and
// posts the next request. It is owned by the association: it ends when
// the admin queue does (connection loss, Close), and the next association
// starts its own.

// EventKind says what an Event reports.
type EventKind int

const (
	// EventANAChange: the ANA state of the namespace's group changed
	// (Event.ANAState). Also reported once per association, after connect.
	EventANAChange EventKind = iota + 1
	// EventReservation: a reservation notification for this host
	// (Event.Notice), e.g. another host preempted its registration.
	EventReservation
)

// Event is an asynchronous event from the target.
type Event struct {
	Kind     EventKind
	ANAState uint8           // EventANAChange: nvme.ANAOptimized, ANAInaccessible, ...
	Notice   nvme.ResvNotice // EventReservation
}

// ANAState returns the ANA state of the namespace's group as last read from
// the target (0 before the first read, or when the target reports none).
func (d *Device) ANAState() uint8 { return uint8(d.ana.Load()) }

// events runs the association's Asynchronous Event Requests until its
// admin queue fails (d.wg counts it).
func (d *Device) events(admin *hqueue, cmic uint8) {
	defer d.wg.Done()
	// ANA change notices need their AEC bit; reservation notices do not. A
	// target that refuses the bit still sends those.
	aec := nvme.SQE{Opcode: nvme.AdminSetFeatures, CDW10: uint32(nvme.FeatAsyncEvent), CDW11: nvme.AECANA}
	if _, err := admin.submit(&aec, nil, false, d.cfg.DialTimeout); err != nil {
		return
	}
	if cmic&cmicANA != 0 {
		d.readANA(admin)
	}
	for {
		cqe, err := admin.submit(&nvme.SQE{Opcode: nvme.AdminAsyncEvent}, nil, false, 0)
		if err != nil {
			return // the association is gone; the next one posts its own
		}
		if !cqe.Status.OK() {
			// Internal Error is how a target ends the requests of a
			// controller it tears down (shutdown, keep-alive expiry).
			if !d.isClosed() && cqe.Status.Code() != nvme.StatusInternal {
				d.log.Warn("asynchronous event request refused; no events on this association", "status", cqe.Status)
			}
			return
		}
		typ, info, lid := uint8(cqe.DW0&7), uint8(cqe.DW0>>8), uint8(cqe.DW0>>16)
		switch {
		case typ == nvme.AENTypeNotice && info == nvme.AENNoticeANAChange:
			d.readANA(admin)
		case typ == nvme.AENTypeIOCmdSpec && lid == nvme.LogResvNotice:
			d.readNotices(admin)
		default:
			d.log.Debug("asynchronous event", "type", typ, "info", info, "log_page", lid)
		}
	}
}

// cmicANA is Identify Controller CMIC bit 3: the controller reports ANA.
const cmicANA = 1 << 3

// readANA reads the ANA log (clearing the event) and reports the state of
// the namespace's group when it changed.
func (d *Device) readANA(admin *hqueue) {
	buf := make([]byte, 4096)
	if err := getLog(admin, nvme.LogANA, buf, false); err != nil {
		d.logReadErr(admin, "reading the ANA log", err)
		return
	}
	_, groups, err := nvme.UnmarshalANALog(buf)
	if err != nil {
		d.log.Warn("ANA log", "err", err)
		return
	}
	for _, g := range groups {
		for _, ns := range g.NSIDs {
			if ns != d.nsid {
				continue
			}
			if old := uint8(d.ana.Swap(uint32(g.State))); old != g.State {
				lvl := slog.LevelInfo
				if old == 0 { // first learnt, not a change
					lvl = slog.LevelDebug
				}
				d.log.Log(context.Background(), lvl, "ANA state", "state", anaName(g.State), "was", anaName(old))
				d.emit(Event{Kind: EventANAChange, ANAState: g.State})
			}
			return
		}
	}
}

// readNotices reads every pending reservation notification and reports
// each.
func (d *Device) readNotices(admin *hqueue) {
	err := readResvNotices(admin, func(n nvme.ResvNotice) {
		d.log.Warn("reservation notification", "type", resvNoticeName(n.Type), "count", n.Count)
		d.emit(Event{Kind: EventReservation, Notice: n})
	})
	if err != nil {
		d.logReadErr(admin, "reading the reservation notification log", err)
	}
}

// logReadErr logs a failed log page read, unless the association is
// ending anyway (Close, connection loss), which the caller learns next.
func (d *Device) logReadErr(admin *hqueue, msg string, err error) {
	if d.isClosed() || admin.dead.Load() {
		d.log.Debug(msg, "err", err)
		return
	}
	d.log.Warn(msg, "err", err)
}

func (d *Device) emit(e Event) {
	if d.cfg.OnEvent != nil {
		d.cfg.OnEvent(e)
	}
}

func anaName(s uint8) string {
	switch s {
	case 0:
		return "unknown"
	case nvme.ANAOptimized:
		return "optimized"
	case nvme.ANANonOptimized:
		return "non-optimized"
	case nvme.ANAInaccessible:
		return "inaccessible"
	case nvme.ANAPersistentLoss:
		return "persistent-loss"
	case nvme.ANAChange:
		return "change"
	}
	return "reserved"
}

func resvNoticeName(t uint8) string {
	switch t {
	case nvme.ResvNoticeRegPreempted:
		return "registration-preempted"
	case nvme.ResvNoticeReleased:
		return "reservation-released"
	case nvme.ResvNoticePreempted:
		return "reservation-preempted"
	}
	return "unknown"
}
