package nvme

import "fmt"

// Status is an NVMe completion status in the Linux-source layout: bits 7:0
// status code (SC), bits 10:8 status code type (SCT), bit 13 More, bit 14
// DNR. The wire field (CQE bytes 14-15) is this value shifted left by one
// (bit 0 is the phase tag); see Wire and StatusFromWire.
type Status uint16

// Status code types.
const (
	SCTGeneric  = 0
	SCTCmdSpec  = 1
	SCTMedia    = 2
	SCTPath     = 3
	SCTVendor   = 7
	StatusMore  = Status(0x2000)
	StatusDNR   = Status(0x4000)
	statusSCMax = 0xFF
)

// Generic command status (SCT 0).
const (
	StatusSuccess             Status = 0x00
	StatusInvalidOpcode       Status = 0x01
	StatusInvalidField        Status = 0x02
	StatusCIDConflict         Status = 0x03
	StatusDataTransferError   Status = 0x04
	StatusInternal            Status = 0x06
	StatusAbortRequested      Status = 0x07
	StatusInvalidNamespace    Status = 0x0B
	StatusCmdSeqError         Status = 0x0C
	StatusSGLInvalidSegment   Status = 0x0D
	StatusSGLInvalidLength    Status = 0x0F
	StatusSGLInvalidType      Status = 0x11
	StatusSGLInvalidOffset    Status = 0x16
	StatusHostIDInconsistent  Status = 0x18
	StatusKATOExpired         Status = 0x19
	StatusKATOInvalid         Status = 0x1A
	StatusNSWriteProtected    Status = 0x20
	StatusTransientTransport  Status = 0x22
	StatusLBARange            Status = 0x80
	StatusCapExceeded         Status = 0x81
	StatusNSNotReady          Status = 0x82
	StatusReservationConflict Status = 0x83
)

// Command-specific status (SCT 1).
const (
	StatusInvalidQID         Status = 0x101
	StatusInvalidQueueSize   Status = 0x102
	StatusAERLimitExceeded   Status = 0x105
	StatusInvalidLogPage     Status = 0x109
	StatusFeatureNotSaveable Status = 0x10D
	StatusConnectIncompatFmt Status = 0x180
	StatusConnectCtrlBusy    Status = 0x181
	StatusConnectInvalidParm Status = 0x182
	StatusConnectRestartDisc Status = 0x183
	StatusConnectInvalidHost Status = 0x184
	StatusInvalidQueueType   Status = 0x185
	StatusDiscoverRestart    Status = 0x190
	StatusAuthRequired       Status = 0x191
)

// Media and data integrity errors (SCT 2).
const (
	StatusWriteFault      Status = 0x280
	StatusUnrecoveredRead Status = 0x281
	StatusCompareFailure  Status = 0x285
	StatusAccessDenied    Status = 0x286
)

// Path related status (SCT 3).
const (
	StatusPathInternal      Status = 0x300
	StatusANAPersistentLoss Status = 0x301
	StatusANAInaccessible   Status = 0x302
	StatusANATransition     Status = 0x303
)

// MakeStatus builds a status from its type and code.
func MakeStatus(sct, sc uint8) Status { return Status(uint16(sct&7)<<8 | uint16(sc)) }

// SCT returns the status code type.
func (s Status) SCT() uint8 { return uint8(s>>8) & 7 }

// SC returns the status code.
func (s Status) SC() uint8 { return uint8(s) }

// DNR reports whether Do Not Retry is set.
func (s Status) DNR() bool { return s&StatusDNR != 0 }

// Code strips DNR and More, leaving SCT<<8|SC.
func (s Status) Code() Status { return s & 0x7FF }

// OK reports success.
func (s Status) OK() bool { return s.Code() == StatusSuccess }

// Wire returns the 16-bit CQE status field (phase bit 0 = 0).
func (s Status) Wire() uint16 { return uint16(s) << 1 }

// StatusFromWire decodes a CQE status field.
func StatusFromWire(w uint16) Status { return Status(w >> 1) }

var statusNames = map[Status]string{
	StatusSuccess: "Success", StatusInvalidOpcode: "Invalid Command Opcode",
	StatusInvalidField: "Invalid Field in Command", StatusCIDConflict: "Command ID Conflict",
	StatusDataTransferError: "Data Transfer Error", StatusInternal: "Internal Error",
	StatusAbortRequested: "Command Abort Requested", StatusInvalidNamespace: "Invalid Namespace or Format",
	StatusCmdSeqError: "Command Sequence Error", StatusSGLInvalidSegment: "Invalid SGL Segment Descriptor",
	StatusSGLInvalidLength: "Data SGL Length Invalid", StatusSGLInvalidType: "SGL Descriptor Type Invalid",
	StatusSGLInvalidOffset: "SGL Offset Invalid", StatusHostIDInconsistent: "Host Identifier Inconsistent Format",
	StatusKATOExpired: "Keep Alive Timer Expired", StatusKATOInvalid: "Keep Alive Timeout Invalid",
	StatusNSWriteProtected: "Namespace is Write Protected", StatusTransientTransport: "Transient Transport Error",
	StatusLBARange: "LBA Out of Range", StatusCapExceeded: "Capacity Exceeded", StatusNSNotReady: "Namespace Not Ready",
	StatusReservationConflict: "Reservation Conflict", StatusInvalidQID: "Invalid Queue Identifier",
	StatusInvalidQueueSize: "Invalid Queue Size", StatusAERLimitExceeded: "Asynchronous Event Request Limit Exceeded",
	StatusInvalidLogPage: "Invalid Log Page", StatusFeatureNotSaveable: "Feature Identifier Not Saveable",
	StatusConnectIncompatFmt: "Connect Incompatible Format", StatusConnectCtrlBusy: "Connect Controller Busy",
	StatusConnectInvalidParm: "Connect Invalid Parameters", StatusConnectRestartDisc: "Connect Restart Discovery",
	StatusConnectInvalidHost: "Connect Invalid Host", StatusInvalidQueueType: "Invalid Queue Type",
	StatusDiscoverRestart: "Discover Restart", StatusAuthRequired: "Authentication Required",
	StatusWriteFault: "Write Fault", StatusUnrecoveredRead: "Unrecovered Read Error",
	StatusCompareFailure: "Compare Failure", StatusAccessDenied: "Access Denied",
	StatusPathInternal: "Internal Path Error", StatusANAPersistentLoss: "Asymmetric Access Persistent Loss",
	StatusANAInaccessible: "Asymmetric Access Inaccessible", StatusANATransition: "Asymmetric Access Transition",
}

// String names the status, e.g. "Connect Invalid Host (sct 0x1 / sc 0x84) DNR".
func (s Status) String() string {
	name, ok := statusNames[s.Code()]
	if !ok {
		name = "Unknown Status"
	}
	str := fmt.Sprintf("%s (sct %#x / sc %#x)", name, s.SCT(), s.SC())
	if s.DNR() {
		str += " DNR"
	}
	return str
}

// Error makes a non-success Status usable as an error.
func (s Status) Error() string { return "nvme: " + s.String() }
