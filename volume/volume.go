package volume

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/google/uuid"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nexus"
	"github.com/kura-io/kura/internal/nvmetcp"
)

// Device is a block device: the method set of every Kura device.
//
// Offsets and lengths must be multiples of BlockSize and lie within Size.
// ReadAt/WriteAt follow io.ReaderAt/io.WriterAt and may be called
// concurrently on non-overlapping ranges; buffers are not retained. A
// write is durable once a later Flush returned nil.
type Device interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Flush() error
	Unmap(off, length int64) error
	WriteZeroes(off, length int64) error
	Size() int64
	BlockSize() int
	Close() error
}

// registry knows the local schemes and nvmf://.
var registry = func() *blockdev.Registry {
	r := blockdev.NewRegistry()
	nvmetcp.RegisterScheme(r)
	return r
}()

// Open opens the device named by uri.
func Open(ctx context.Context, uri string) (Device, error) {
	return registry.Open(ctx, uri)
}

// Options tunes CreateNexusWith. The zero value is valid.
type Options struct {
	// UUID identifies the nexus; generated when empty.
	UUID string
	// StateDir keeps the nexus' persistent state: which children are up to
	// date (NexusInfo) and the dirty-segment logs used for partial rebuild.
	// Empty keeps it in memory (nothing survives the process).
	StateDir string
	// ChildTimeout bounds each child I/O (default 30 s): a child that hangs
	// longer is faulted and the I/O completes on the others.
	ChildTimeout time.Duration
	// RebuildRate limits rebuild bandwidth in bytes/s (0 = unlimited).
	RebuildRate int64
	// WriteIntent (needs StateDir) logs the segments with writes in
	// flight, so after a crash the mirrors resync only those instead of
	// being rebuilt in full; it costs an fdatasync whenever a write
	// touches a segment not written in the last few seconds.
	WriteIntent bool
	// Logger receives nexus events (default slog.Default()).
	Logger *slog.Logger
}

// Nexus is a volume mirrored onto several child devices. It is a Device.
// Writes go to every healthy child; reads go to the least busy one; a
// failing child is faulted and the volume keeps working on the others.
type Nexus struct {
	n *nexus.Nexus
}

var _ Device = (*Nexus)(nil)

// CreateNexus creates a nexus of numBlocks blocks of blockSize bytes over
// children (device URIs). An empty uuid generates one.
func CreateNexus(ctx context.Context, name string, blockSize int, numBlocks int64, uuid string, children []string) (*Nexus, error) {
	return CreateNexusWith(ctx, name, blockSize, numBlocks, children, Options{UUID: uuid})
}

// CreateNexusWith is CreateNexus with Options.
func CreateNexusWith(ctx context.Context, name string, blockSize int, numBlocks int64, children []string, o Options) (*Nexus, error) {
	if numBlocks <= 0 {
		return nil, fmt.Errorf("volume: numBlocks must be positive, got %d", numBlocks)
	}
	id := o.UUID
	if id == "" {
		id = uuid.NewString()
	}
	cfg := nexus.Config{Name: name, UUID: id, Size: int64(blockSize) * numBlocks, BlockSize: blockSize,
		Children: children, Opener: registry.Open, ChildTimeout: o.ChildTimeout,
		RebuildRate: o.RebuildRate, WriteIntent: o.WriteIntent, Logger: o.Logger}
	if o.StateDir != "" {
		st, err := nexus.NewFileStore(o.StateDir)
		if err != nil {
			return nil, err
		}
		cfg.Store, cfg.LogDir = st, filepath.Clean(o.StateDir)
	}
	n, err := nexus.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Nexus{n: n}, nil
}

// ReadAt reads len(p) bytes at off.
func (x *Nexus) ReadAt(p []byte, off int64) (int, error) { return x.n.ReadAt(p, off) }

// WriteAt writes p at off on every healthy child.
func (x *Nexus) WriteAt(p []byte, off int64) (int, error) { return x.n.WriteAt(p, off) }

// Flush makes completed writes durable on every child.
func (x *Nexus) Flush() error { return x.n.Flush() }

// Unmap deallocates a range (reads return zeros afterwards).
func (x *Nexus) Unmap(off, length int64) error { return x.n.Unmap(off, length) }

// WriteZeroes zeroes a range.
func (x *Nexus) WriteZeroes(off, length int64) error { return x.n.WriteZeroes(off, length) }

// Size is the volume size in bytes.
func (x *Nexus) Size() int64 { return x.n.Size() }

// BlockSize is the volume block size.
func (x *Nexus) BlockSize() int { return x.n.BlockSize() }

// Close flushes and closes the children and records a clean shutdown.
func (x *Nexus) Close() error { return x.n.Close() }

// Name returns the nexus name.
func (x *Nexus) Name() string { return x.n.Name() }

// UUID returns the nexus UUID.
func (x *Nexus) UUID() string { return x.n.UUID() }

// State is "online", "degraded", "faulted" or "shutdown".
func (x *Nexus) State() string { return x.n.State().String() }

// Child describes one child of a nexus.
type Child struct {
	URI string
	// State is "open", "degraded-rebuilding", "faulted", "offline" or
	// "closed".
	State           string
	Reason          string
	RebuildProgress float64 // percent, while rebuilding
}

// Children lists the children.
func (x *Nexus) Children() []Child {
	var out []Child
	for _, c := range x.n.Children() {
		out = append(out, Child{URI: c.URI, State: c.State.String(), Reason: c.Reason, RebuildProgress: c.RebuildProgress})
	}
	return out
}

// AddChild adds a device and rebuilds it from the healthy children in the
// background.
func (x *Nexus) AddChild(ctx context.Context, uri string) error { return x.n.AddChild(ctx, uri) }

// AddChildNoRebuild adds a device out of sync: it takes no I/O and is not
// trusted until StartRebuild copies the volume onto it.
func (x *Nexus) AddChildNoRebuild(ctx context.Context, uri string) error {
	return x.n.AddChildNoRebuild(ctx, uri)
}

// StartRebuild starts rebuilding an out-of-sync, faulted or offline child.
func (x *Nexus) StartRebuild(ctx context.Context, uri string) error {
	return x.n.StartRebuild(ctx, uri)
}

// RemoveChild removes a child (never the last healthy one).
func (x *Nexus) RemoveChild(ctx context.Context, uri string) error { return x.n.RemoveChild(ctx, uri) }

// OfflineChild takes a child offline; OnlineChild brings it back and copies
// only what it missed.
func (x *Nexus) OfflineChild(ctx context.Context, uri string) error {
	return x.n.OfflineChild(ctx, uri)
}

// OnlineChild brings a faulted or offline child back (rebuild).
func (x *Nexus) OnlineChild(ctx context.Context, uri string) error { return x.n.OnlineChild(ctx, uri) }

// AlignedBuffer returns n zeroed bytes aligned to 4096 in memory, suitable
// for direct I/O (any buffer works with Kura devices; aligned ones avoid a
// copy on O_DIRECT files).
func AlignedBuffer(n int) []byte {
	const align = 4096
	b := make([]byte, n+align)
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b))) & (align - 1))
	return b[off : off+n : off+n]
}
