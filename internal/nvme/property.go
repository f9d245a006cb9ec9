package nvme

// Controller property offsets (NVMe over Fabrics: Property Get/Set).
const (
	PropCAP  uint32 = 0x00
	PropVS   uint32 = 0x08
	PropCC   uint32 = 0x14
	PropCSTS uint32 = 0x1C
	PropNSSR uint32 = 0x20
)

// Property Get/Set ATTRIB size values (CDW10 bits 2:0).
const (
	PropSize4 = 0
	PropSize8 = 1
)

// CC bits.
const (
	CCEnable      uint32 = 1 << 0
	CCCSSShift           = 4
	CCMPSShift           = 7
	CCAMSShift           = 11
	CCSHNShift           = 14
	CCSHNMask     uint32 = 3 << CCSHNShift
	CCIOSQESShift        = 16
	CCIOCQESShift        = 20
)

// CSTS bits.
const (
	CSTSReady        uint32 = 1 << 0
	CSTSFatal        uint32 = 1 << 1
	CSTSShstShift           = 2
	CSTSShstMask     uint32 = 3 << CSTSShstShift
	CSTSShstComplete uint32 = 2 << CSTSShstShift
)

// Version builds a VS value (major.minor.tertiary).
func Version(major, minor, ter uint32) uint32 { return major<<16 | minor<<8 | ter }

// CAPFields builds a CAP value.
type CAPFields struct {
	MQES    uint16 // 0's based max queue entries
	CQR     bool
	TO      uint8 // 500 ms units
	CSSNVM  bool  // bit 37
	CSSIOCS bool  // bit 43
	MPSMIN  uint8
	MPSMAX  uint8
}

// Encode returns the 64-bit CAP register.
func (c CAPFields) Encode() uint64 {
	v := uint64(c.MQES) | uint64(c.TO)<<24 | uint64(c.MPSMIN&0xF)<<48 | uint64(c.MPSMAX&0xF)<<52
	if c.CQR {
		v |= 1 << 16
	}
	if c.CSSNVM {
		v |= 1 << 37
	}
	if c.CSSIOCS {
		v |= 1 << 43
	}
	return v
}

// DecodeCAP parses a CAP register.
func DecodeCAP(v uint64) CAPFields {
	return CAPFields{MQES: uint16(v), CQR: v&(1<<16) != 0, TO: uint8(v >> 24),
		CSSNVM: v&(1<<37) != 0, CSSIOCS: v&(1<<43) != 0, MPSMIN: uint8(v>>48) & 0xF, MPSMAX: uint8(v>>52) & 0xF}
}
