package nvme

import (
	"encoding/binary"
	"fmt"
)

// Reservation Notification log page types (NVMe Base 2.0, Reservation
// Notification log page, byte 8). The same numbers are the bits of the
// Reservation Notification Mask feature (FeatResvMask) that suppress them.
const (
	ResvNoticeEmpty        uint8 = 0
	ResvNoticeRegPreempted uint8 = 1 // this host's registration was removed by another host's preempt
	ResvNoticeReleased     uint8 = 2 // the reservation was released by its holder
	ResvNoticePreempted    uint8 = 3 // the reservation and this host's registration were cleared
)

// ResvNoticeMaskAll is every bit the Reservation Notification Mask defines.
const ResvNoticeMaskAll uint32 = 1<<ResvNoticeRegPreempted | 1<<ResvNoticeReleased | 1<<ResvNoticePreempted

// ResvNoticeLen is the size of the Reservation Notification log page.
const ResvNoticeLen = 64

// ResvNotice is one Reservation Notification log page. Count 0 (and Type
// ResvNoticeEmpty) means no notification was pending.
type ResvNotice struct {
	Count     uint64 // Log Page Count: increments per notification created; a gap means some were lost
	Type      uint8
	Available uint8 // further unread notifications (at most 255)
	NSID      uint32
}

// Marshal encodes n into the 64-byte log page.
func (n ResvNotice) Marshal() []byte {
	b := make([]byte, ResvNoticeLen)
	binary.LittleEndian.PutUint64(b[0:], n.Count)
	b[8], b[9] = n.Type, n.Available
	binary.LittleEndian.PutUint32(b[12:], n.NSID)
	return b
}

// UnmarshalResvNotice decodes a Reservation Notification log page.
func UnmarshalResvNotice(b []byte) (ResvNotice, error) {
	if len(b) < 16 {
		return ResvNotice{}, fmt.Errorf("nvme: reservation notification log: %d bytes, need 16", len(b))
	}
	return ResvNotice{Count: binary.LittleEndian.Uint64(b[0:]), Type: b[8], Available: b[9],
		NSID: binary.LittleEndian.Uint32(b[12:])}, nil
}
