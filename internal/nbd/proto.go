package nbd

// Wire constants of the NBD protocol (all big-endian on the wire). Names
// follow the protocol document; see docs/nbd.md for what Kura implements.

// Magic numbers.
const (
	magicNBD          uint64 = 0x4E42444D41474943 // "NBDMAGIC"
	magicIHaveOpt     uint64 = 0x49484156454F5054 // "IHAVEOPT"
	magicOptReply     uint64 = 0x0003E889045565A9
	magicOldstyle     uint64 = 0x00420281861253
	magicRequest      uint32 = 0x25609513
	magicSimpleReply  uint32 = 0x67446698
	magicStructReply  uint32 = 0x668E33EF
	magicExtRequest   uint32 = 0x21E41C71
	defaultListenAddr        = "127.0.0.1:10809"
)

// Handshake flags (server → client) and client flags (client → server).
const (
	flagFixedNewstyle uint16 = 1 << 0
	flagNoZeroes      uint16 = 1 << 1

	cflagFixedNewstyle uint32 = 1 << 0
	cflagNoZeroes      uint32 = 1 << 1
)

// Option codes.
const (
	optExportName      uint32 = 1
	optAbort           uint32 = 2
	optList            uint32 = 3
	optPeekExport      uint32 = 4
	optStartTLS        uint32 = 5
	optInfo            uint32 = 6
	optGo              uint32 = 7
	optStructuredReply uint32 = 8
	optListMetaContext uint32 = 9
	optSetMetaContext  uint32 = 10
	optExtendedHeaders uint32 = 11
)

// Option reply types.
const (
	repAck         uint32 = 1
	repServer      uint32 = 2
	repInfo        uint32 = 3
	repErrUnsup    uint32 = 0x80000001
	repErrPolicy   uint32 = 0x80000002
	repErrInvalid  uint32 = 0x80000003
	repErrUnknown  uint32 = 0x80000006
	repErrShutdown uint32 = 0x80000007
	repErrTooBig   uint32 = 0x80000009
)

// Info types inside NBD_REP_INFO.
const (
	infoExport      uint16 = 0
	infoName        uint16 = 1
	infoDescription uint16 = 2
	infoBlockSize   uint16 = 3
)

// Transmission flags.
const (
	tflagHasFlags        uint16 = 1 << 0
	tflagReadOnly        uint16 = 1 << 1
	tflagSendFlush       uint16 = 1 << 2
	tflagSendFUA         uint16 = 1 << 3
	tflagSendTrim        uint16 = 1 << 5
	tflagSendWriteZeroes uint16 = 1 << 6
	tflagCanMultiConn    uint16 = 1 << 8
)

// Command types.
const (
	cmdRead        uint16 = 0
	cmdWrite       uint16 = 1
	cmdDisc        uint16 = 2
	cmdFlush       uint16 = 3
	cmdTrim        uint16 = 4
	cmdCache       uint16 = 5
	cmdWriteZeroes uint16 = 6
	cmdBlockStatus uint16 = 7
)

// Command flags.
const (
	cmdFlagFUA      uint16 = 1 << 0
	cmdFlagNoHole   uint16 = 1 << 1
	cmdFlagDF       uint16 = 1 << 2
	cmdFlagFastZero uint16 = 1 << 4
)

// Structured reply flags and chunk types.
const (
	replyFlagDone       uint16 = 1 << 0
	replyTypeNone       uint16 = 0
	replyTypeOffsetData uint16 = 1
	replyTypeError      uint16 = 0x8001
)

// NBD error values carried in replies.
const (
	errPerm     uint32 = 1
	errIO       uint32 = 5
	errInval    uint32 = 22
	errNoSpc    uint32 = 28
	errShutdown uint32 = 108
)

// Sizes and limits.
const (
	greetingLen       = 18
	optHeaderLen      = 16
	requestHeaderLen  = 28
	simpleReplyLen    = 16
	structReplyLen    = 20
	maxStringLen      = 4096     // longest export name / description accepted
	maxOptionLen      = 64 << 10 // longest option payload read into memory
	maxPayload        = 32 << 20 // advertised maximum READ/WRITE payload
	preferredBlock    = 4096
	exportNameZeroPad = 124
)
