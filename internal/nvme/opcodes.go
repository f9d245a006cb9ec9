package nvme

// Admin command opcodes (NVMe Base 2.0 §5).
const (
	AdminGetLogPage  uint8 = 0x02
	AdminIdentify    uint8 = 0x06
	AdminAbort       uint8 = 0x08
	AdminSetFeatures uint8 = 0x09
	AdminGetFeatures uint8 = 0x0A
	AdminAsyncEvent  uint8 = 0x0C
	AdminKeepAlive   uint8 = 0x18
)

// I/O (NVM command set) opcodes.
const (
	IOFlush        uint8 = 0x00
	IOWrite        uint8 = 0x01
	IORead         uint8 = 0x02
	IOWriteUncor   uint8 = 0x04
	IOCompare      uint8 = 0x05
	IOWriteZeroes  uint8 = 0x08
	IODSM          uint8 = 0x09
	IOResvRegister uint8 = 0x0D
	IOResvReport   uint8 = 0x0E
	IOResvAcquire  uint8 = 0x11
	IOResvRelease  uint8 = 0x15
)

// OpcodeFabrics is the opcode of every fabrics command; the command type
// (FCTYPE) is SQE byte 4.
const OpcodeFabrics uint8 = 0x7F

// Fabrics command types.
const (
	FabricsPropertySet uint8 = 0x00
	FabricsConnect     uint8 = 0x01
	FabricsPropertyGet uint8 = 0x04
	FabricsAuthSend    uint8 = 0x05
	FabricsAuthRecv    uint8 = 0x06
	FabricsDisconnect  uint8 = 0x08
)

// DataDirection tells which way a command moves data.
type DataDirection uint8

const (
	DirNone DataDirection = iota
	DirHostToCtrl
	DirCtrlToHost
	DirBoth
)

// Direction returns the data direction encoded in the low two opcode bits
// (NVMe Base 2.0 Figure 88: 01b host→controller, 10b controller→host).
func Direction(opcode uint8) DataDirection {
	return DataDirection(opcode & 3)
}

// FabricsDirection returns the data direction of a fabrics command type.
func FabricsDirection(fctype uint8) DataDirection {
	return DataDirection(fctype & 3)
}

// Well-known NQNs.
const (
	DiscoveryNQN = "nqn.2014-08.org.nvmexpress.discovery"
)
