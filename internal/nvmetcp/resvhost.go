package nvmetcp

import (
	"context"
	"fmt"

	"github.com/kura-io/kura/internal/nvme"
)

// readResvNotices takes the pending pages of the Reservation Notification
// log one by one (read without RAE, so the target may signal the next
// one) and calls fn for each, oldest first.
func readResvNotices(q *hqueue, fn func(nvme.ResvNotice)) error {
	buf := make([]byte, nvme.ResvNoticeLen)
	for range 256 { // the target keeps fewer; bounds a misbehaving one
		if err := getLog(q, nvme.LogResvNotice, buf, false); err != nil {
			return err
		}
		n, err := nvme.UnmarshalResvNotice(buf)
		if err != nil || n.Count == 0 {
			return err
		}
		fn(n)
		if n.Available == 0 {
			return nil
		}
	}
	return nil
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
