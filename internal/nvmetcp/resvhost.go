package nvmetcp

import (
	"context"
	"fmt"

	"github.com/kura-io/kura/internal/nvme"
)

// ReservationNotices reads and removes the reservation notifications
// pending on this host's controller, oldest first (Reservation
// Notification log page, read without RAE so the target may signal the
// next one). A gap in their Count values means the target lost some.
func (d *Device) ReservationNotices(ctx context.Context) ([]nvme.ResvNotice, error) {
	var out []nvme.ResvNotice
	buf := make([]byte, nvme.ResvNoticeLen)
	for range 256 { // the target keeps fewer; bounds a misbehaving one
		q, err := d.adminQueue(ctx)
		if err != nil {
			return out, err
		}
		if err := getLog(q, nvme.LogResvNotice, buf, false); err != nil {
			return out, fmt.Errorf("reservation notification log of %s: %w", d.cfg.SubNQN, err)
		}
		n, err := nvme.UnmarshalResvNotice(buf)
		if err != nil || n.Count == 0 {
			return out, err
		}
		out = append(out, n)
		if n.Available == 0 {
			return out, nil
		}
	}
	return out, nil
}

// SetReservationNoticeMask sets the Reservation Notification Mask of this
// host's controller: bit t set (t one of nvme.ResvNotice*) suppresses
// notifications of type t.
func (d *Device) SetReservationNoticeMask(ctx context.Context, mask uint32) error {
	q, err := d.adminQueue(ctx)
	if err != nil {
		return err
	}
	sqe := nvme.SQE{Opcode: nvme.AdminSetFeatures, NSID: d.nsid, CDW10: uint32(nvme.FeatResvMask), CDW11: mask}
	if err := adminCmd(q, &sqe, nil); err != nil {
		return fmt.Errorf("reservation notification mask of %s: %w", d.cfg.SubNQN, err)
	}
	return nil
}
