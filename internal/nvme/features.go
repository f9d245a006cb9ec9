package nvme

// Feature identifiers (Set/Get Features CDW10 7:0).
const (
	FeatArbitration   uint8 = 0x01
	FeatPowerMgmt     uint8 = 0x02
	FeatTempThreshold uint8 = 0x04
	FeatErrorRecovery uint8 = 0x05
	FeatVolatileWC    uint8 = 0x06
	FeatNumQueues     uint8 = 0x07
	FeatIRQCoalesce   uint8 = 0x08
	FeatIRQConfig     uint8 = 0x09
	FeatWriteAtomic   uint8 = 0x0A
	FeatAsyncEvent    uint8 = 0x0B
	FeatTimestamp     uint8 = 0x0E
	FeatKeepAlive     uint8 = 0x0F
	FeatHostBehavior  uint8 = 0x16
	FeatHostID        uint8 = 0x81
	FeatResvMask      uint8 = 0x82
	FeatResvPersist   uint8 = 0x83
)

// Log page identifiers (Get Log Page CDW10 7:0).
const (
	LogError      uint8 = 0x01
	LogSMART      uint8 = 0x02
	LogFirmware   uint8 = 0x03
	LogChangedNS  uint8 = 0x04
	LogCmdEffects uint8 = 0x05
	LogANA        uint8 = 0x0C
	LogDiscovery  uint8 = 0x70
	LogResvNotice uint8 = 0x80
)

// Async event types and infos (AER completion DW0).
const (
	AENTypeError       = 0
	AENTypeSMART       = 1
	AENTypeNotice      = 2
	AENTypeIOCmdSpec   = 6
	AENNoticeNSChanged = 0x00
	AENNoticeANAChange = 0x03
	AENNoticeDiscLog   = 0xF0
	AENResvLogAvail    = 0x00
)

// AEC (Async Event Configuration) bits.
const (
	AECNSAttr  uint32 = 1 << 8
	AECANA     uint32 = 1 << 11
	AECDiscLog uint32 = 1 << 31
)

// AENResult builds an AER completion DW0.
func AENResult(typ, info, lid uint8) uint32 {
	return uint32(typ&7) | uint32(info)<<8 | uint32(lid)<<16
}

// ANA states.
const (
	ANAOptimized      uint8 = 0x01
	ANANonOptimized   uint8 = 0x02
	ANAInaccessible   uint8 = 0x03
	ANAPersistentLoss uint8 = 0x04
	ANAChange         uint8 = 0x0F
)

// Reservation types.
const (
	ResvWriteExclusive         uint8 = 1
	ResvExclusiveAccess        uint8 = 2
	ResvWriteExclusiveRegOnly  uint8 = 3
	ResvExclusiveAccessRegOnly uint8 = 4
	ResvWriteExclusiveAllReg   uint8 = 5
	ResvExclusiveAccessAllReg  uint8 = 6
)
