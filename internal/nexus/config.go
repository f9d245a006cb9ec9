package nexus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// Defaults for zero Config fields.
const (
	DefaultChildTimeout = 30 * time.Second
	DefaultSegmentSize  = 1 << 20
	DefaultQueueDepth   = 64
	defaultQueueLen     = 4096
)

// Config describes a nexus.
type Config struct {
	Name string
	UUID string // key for the InfoStore and the dirty logs; defaults to Name
	// Size in bytes; 0 means the smallest child. Children must be at least
	// this large.
	Size int64
	// BlockSize is 512 or 4096; 0 means the children's (which must agree).
	BlockSize int
	Children  []string // child URIs
	// Opener opens a child URI; nil uses a fresh blockdev.NewRegistry().
	Opener func(ctx context.Context, uri string) (blockdev.Device, error)
	// Store persists NexusInfo; nil keeps it in memory (no restart safety).
	Store InfoStore
	// LogDir holds the dirty-segment logs (one file per absent child); ""
	// keeps them in memory only, so partial rebuild does not survive a
	// restart.
	LogDir string
	// ChildTimeout bounds every child I/O; a child exceeding it is faulted.
	ChildTimeout time.Duration
	// RebuildRate limits rebuild copy bandwidth in bytes/s (0 = unlimited).
	RebuildRate int64
	// SegmentSize is the rebuild and dirty-log granule (multiple of the
	// block size).
	SegmentSize int64
	// RebuildTasks is the number of concurrent segment copies per rebuild.
	RebuildTasks int
	// QueueDepth is the number of worker goroutines per child (the most
	// I/Os one child sees at once).
	QueueDepth int
	// IsolateChildIO runs every child I/O on a worker goroutine, so the
	// client's goroutine never enters a child device call: a hung child
	// costs the client exactly ChildTimeout, whatever the device. The
	// default runs one child's part of each I/O inline in the caller (no
	// goroutine handoff on the hot path) under a watchdog that faults the
	// child and closes its device after ChildTimeout; the caller returns
	// when the device call does, which is at once for devices that abort
	// I/O on Close (NVMe/TCP initiator, fault wrapper) but may take as
	// long as the kernel's own timeout for a local file on a hung disk.
	IsolateChildIO bool
	// WriteIntent records the segments with writes in flight in a rotating
	// log in LogDir, so that after an unclean shutdown the children that
	// are not trusted get a partial resync instead of a full rebuild. It
	// costs a group-committed fdatasync whenever a write touches a segment
	// not yet marked in the current generation.
	WriteIntent bool
	// IntentInterval is how often the write-intent log rotates (default
	// 5 s): a segment stays marked for one to two intervals after its last
	// write.
	IntentInterval time.Duration
	Logger         *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Name == "" {
		return fmt.Errorf("%w: name is required", ErrConfig)
	}
	if c.UUID == "" {
		c.UUID = c.Name
	}
	if len(c.Children) == 0 {
		return fmt.Errorf("%w: at least one child is required", ErrConfig)
	}
	seen := map[string]bool{}
	for _, u := range c.Children {
		if seen[u] {
			return fmt.Errorf("%w: child %q listed twice", ErrConfig, u)
		}
		seen[u] = true
	}
	if c.BlockSize != 0 && c.BlockSize != 512 && c.BlockSize != 4096 {
		return fmt.Errorf("%w: block size %d (want 512 or 4096)", ErrConfig, c.BlockSize)
	}
	if c.Opener == nil {
		c.Opener = blockdev.NewRegistry().Open
	}
	if c.Store == nil {
		c.Store = NewMemStore()
	}
	if c.ChildTimeout <= 0 {
		c.ChildTimeout = DefaultChildTimeout
	}
	if c.SegmentSize <= 0 {
		c.SegmentSize = DefaultSegmentSize
	}
	if c.SegmentSize%4096 != 0 {
		return fmt.Errorf("%w: segment size %d must be a multiple of 4096", ErrConfig, c.SegmentSize)
	}
	if c.RebuildTasks <= 0 {
		c.RebuildTasks = 2
	}
	if c.QueueDepth <= 0 {
		c.QueueDepth = DefaultQueueDepth
	}
	if c.IntentInterval <= 0 {
		c.IntentInterval = 5 * time.Second
	}
	if c.WriteIntent && c.LogDir == "" {
		return fmt.Errorf("%w: write intent needs a LogDir", ErrConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
