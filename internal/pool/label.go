package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/kura-io/kura/internal/blockdev"
)

// On-disk constants. See docs/pool-format.md.
const (
	labelSize     = 4096 // bytes per label copy; also the metadata block size
	labelMagic    = "KURAPOOL"
	formatVersion = 1

	minClusterSize     = 64 << 10
	maxClusterSize     = 1 << 30
	DefaultClusterSize = 4 << 20

	maxNameLen     = 255
	maxPoolNameLen = 128
	defaultMaxVols = 1024
	volHdrMax      = 64 + maxNameLen // encoded volume header upper bound
	// maxClusters keeps physical cluster numbers + 1 below the ZERO marker.
	maxClusters = 1<<32 - 16
	// maxLogicalClusters bounds one volume's map (2^28 clusters).
	maxLogicalClusters = 1 << 28
	// maxTotalLogical bounds the logical clusters of all volumes together,
	// so map roots (8 bytes per 512 clusters) stay under 64 MiB even for
	// overcommitted thin pools and for corrupt metadata.
	maxTotalLogical = 1 << 32
)

// State is the pool's lifecycle state recorded in its label.
type State uint32

const (
	// StateActive means an engine imported (or created) the pool and has
	// not exported it; importing an active pool runs crash recovery.
	StateActive State = 1
	// StateExported means the pool was cleanly exported.
	StateExported State = 2
)

func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateExported:
		return "exported"
	}
	return fmt.Sprintf("state(%d)", uint32(s))
}

// Label is the pool's self-description, stored at block 0 and again in
// the last 4 KiB of the device.
type Label struct {
	Name        string
	UUID        string
	Version     uint32
	State       State
	ClusterSize int64
	DeviceSize  int64 // device size at create time
	BlockSize   int
	MaxVolumes  uint32
	SlotOffset  int64 // checkpoint slot 0; slot 1 follows at SlotOffset+SlotSize
	SlotSize    int64
	JournalOff  int64
	JournalSize int64
	DataOffset  int64 // physical cluster 0
	Clusters    int64 // number of data clusters
}

func (l *Label) backupOffset() int64 { return alignDown(l.DeviceSize, labelSize) - labelSize }

// encodeLabel returns the 4 KiB on-disk form of l.
func encodeLabel(l *Label) []byte {
	u := uuid.MustParse(l.UUID)
	e := enc{b: make([]byte, 0, labelSize)}
	e.bytes([]byte(labelMagic))
	e.u32(l.Version)
	e.u32(uint32(l.State))
	e.bytes(u[:])
	e.u64(uint64(l.ClusterSize))
	e.u64(uint64(l.DeviceSize))
	e.u32(uint32(l.BlockSize))
	e.u32(l.MaxVolumes)
	e.u64(uint64(l.SlotOffset))
	e.u64(uint64(l.SlotSize))
	e.u64(uint64(l.JournalOff))
	e.u64(uint64(l.JournalSize))
	e.u64(uint64(l.DataOffset))
	e.u64(uint64(l.Clusters))
	e.str(l.Name)
	b := e.b[:labelSize]
	clear(b[len(e.b):])
	e2 := enc{b: b[:labelSize-4]}
	e2.u32(crc(b[:labelSize-4]))
	return b
}

// errNoMagic marks a label block without the magic (not a pool).
var errNoMagic = errors.New("no pool label magic")

// decodeLabel parses and fully validates a 4 KiB label block.
func decodeLabel(b []byte) (Label, error) {
	var l Label
	if len(b) < labelSize || !bytes.Equal(b[:8], []byte(labelMagic)) {
		return l, errNoMagic
	}
	b = b[:labelSize]
	d := dec{b: b[labelSize-4:]}
	if want := d.u32(); want != crc(b[:labelSize-4]) {
		return l, fmt.Errorf("%w: label checksum mismatch", ErrCorrupt)
	}
	d = dec{b: b[8 : labelSize-4]}
	l.Version = d.u32()
	l.State = State(d.u32())
	var u uuid.UUID
	copy(u[:], d.take(16))
	l.UUID = u.String()
	l.ClusterSize = int64(d.u64())
	l.DeviceSize = int64(d.u64())
	l.BlockSize = int(d.u32())
	l.MaxVolumes = d.u32()
	l.SlotOffset = int64(d.u64())
	l.SlotSize = int64(d.u64())
	l.JournalOff = int64(d.u64())
	l.JournalSize = int64(d.u64())
	l.DataOffset = int64(d.u64())
	l.Clusters = int64(d.u64())
	l.Name = d.str(maxPoolNameLen)
	if d.bad {
		return l, fmt.Errorf("%w: label truncated", ErrCorrupt)
	}
	if l.Version != formatVersion {
		return l, fmt.Errorf("%w: unsupported format version %d (this build reads %d)", ErrCorrupt, l.Version, formatVersion)
	}
	if err := l.validate(); err != nil {
		return l, fmt.Errorf("%w: label: %v", ErrCorrupt, err)
	}
	return l, nil
}

// validate checks the label's geometry is self-consistent.
func (l *Label) validate() error {
	switch {
	case l.State != StateActive && l.State != StateExported:
		return fmt.Errorf("bad state %d", l.State)
	case checkClusterSize(l.ClusterSize) != nil:
		return checkClusterSize(l.ClusterSize)
	case l.BlockSize != 512 && l.BlockSize != 4096:
		return fmt.Errorf("bad block size %d", l.BlockSize)
	case l.MaxVolumes == 0 || l.MaxVolumes > 1<<16:
		return fmt.Errorf("bad max volumes %d", l.MaxVolumes)
	case l.SlotOffset != labelSize, l.SlotSize <= 0, l.SlotSize%labelSize != 0, l.SlotSize > 1<<36:
		return fmt.Errorf("bad checkpoint slots %d+%d", l.SlotOffset, l.SlotSize)
	case l.JournalOff != l.SlotOffset+2*l.SlotSize, l.JournalSize < 16*labelSize, l.JournalSize%labelSize != 0, l.JournalSize > 1<<30:
		return fmt.Errorf("bad journal %d+%d", l.JournalOff, l.JournalSize)
	case l.DataOffset < l.JournalOff+l.JournalSize, l.DataOffset%labelSize != 0:
		return fmt.Errorf("bad data offset %d", l.DataOffset)
	case l.Clusters <= 0 || l.Clusters > maxClusters:
		return fmt.Errorf("bad cluster count %d", l.Clusters)
	case l.DeviceSize <= 0 || l.DataOffset+l.Clusters*l.ClusterSize > l.backupOffset():
		return fmt.Errorf("data area overlaps backup label (device %d)", l.DeviceSize)
	case validName(l.Name, maxPoolNameLen) != nil:
		return validName(l.Name, maxPoolNameLen)
	}
	return nil
}

func checkClusterSize(cs int64) error {
	if cs < minClusterSize || cs > maxClusterSize || cs%minClusterSize != 0 {
		return fmt.Errorf("cluster size %d must be a multiple of 64 KiB in [64 KiB, 1 GiB]", cs)
	}
	return nil
}

// validName accepts 1..max bytes of UTF-8 without control characters.
func validName(s string, max int) error {
	if len(s) == 0 || len(s) > max || !utf8.ValidString(s) {
		return fmt.Errorf("name %q must be 1..%d bytes of UTF-8", s, max)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("name %q contains a control character", s)
		}
	}
	return nil
}

// layout computes the geometry of a new pool on a device.
func layout(devSize int64, blockSize int, cs int64) (Label, error) {
	l := Label{Version: formatVersion, State: StateActive, ClusterSize: cs, DeviceSize: devSize,
		BlockSize: blockSize, MaxVolumes: defaultMaxVols, SlotOffset: labelSize}
	usable := alignDown(devSize, labelSize)
	est := usable / cs
	if est > maxClusters {
		return l, fmt.Errorf("%w: device has %d clusters of %d bytes; at most %d supported", ErrInvalidArgument, est, cs, int64(maxClusters))
	}
	// Worst case checkpoint: every cluster in its own map run or list
	// entry, plus as many ZERO-marker runs as clusters, plus headers.
	l.SlotSize = alignUp(2*labelSize+int64(l.MaxVolumes)*volHdrMax+est*28, labelSize)
	l.JournalSize = min(max(alignUp(usable/512, labelSize), 256<<10), 8<<20)
	l.JournalOff = l.SlotOffset + 2*l.SlotSize
	l.DataOffset = alignUp(l.JournalOff+l.JournalSize, 1<<20)
	l.Clusters = (usable - labelSize - l.DataOffset) / cs
	if l.Clusters < 1 {
		return l, fmt.Errorf("%w: device of %d bytes too small for a pool with %d-byte clusters", ErrInvalidArgument, devSize, cs)
	}
	return l, nil
}

// readLabels reads both label copies. It returns the label to use, whether
// the primary copy needs rewriting, or ErrNotAPool / ErrCorrupt.
func readLabels(dev blockdev.Device) (Label, bool, error) {
	buf := make([]byte, labelSize)
	if _, err := dev.ReadAt(buf, 0); err != nil {
		return Label{}, false, fmt.Errorf("pool: read label: %w", err)
	}
	prim, perr := decodeLabel(buf)
	if perr == nil {
		return prim, false, nil
	}
	bOff := alignDown(dev.Size(), labelSize) - labelSize
	if bOff <= 0 {
		return Label{}, false, fmt.Errorf("%w: device too small", ErrNotAPool)
	}
	if _, err := dev.ReadAt(buf, bOff); err != nil {
		return Label{}, false, fmt.Errorf("pool: read backup label: %w", err)
	}
	back, berr := decodeLabel(buf)
	if berr == nil && back.backupOffset() == bOff {
		return back, true, nil
	}
	if errors.Is(perr, errNoMagic) && (errors.Is(berr, errNoMagic) || berr == nil) {
		return Label{}, false, ErrNotAPool
	}
	if !errors.Is(perr, errNoMagic) {
		return Label{}, false, fmt.Errorf("pool: primary label: %w (backup: %v)", perr, berr)
	}
	return Label{}, false, fmt.Errorf("pool: backup label: %w", berr)
}

// Probe reads the pool label without importing or changing anything.
func Probe(ctx context.Context, dev blockdev.Device) (Label, error) {
	if err := ctx.Err(); err != nil {
		return Label{}, err
	}
	l, _, err := readLabels(dev)
	return l, err
}
