package nexus

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/kura-io/kura/internal/rebuild"
)

// State is the nexus state.
type State int

// Nexus states.
const (
	Online   State = iota // every child healthy
	Degraded              // at least one healthy child, not all
	Faulted               // no healthy child: I/O fails
	Shutdown              // shut down or destroyed
)

func (s State) String() string {
	switch s {
	case Online:
		return "online"
	case Degraded:
		return "degraded"
	case Faulted:
		return "faulted"
	case Shutdown:
		return "shutdown"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Nexus is a mirrored block device over N children. It implements
// blockdev.Device and blockdev.Allocation. All methods are safe for
// concurrent use.
type Nexus struct {
	cfg       Config
	size      int64
	blockSize int
	nseg      int64
	log       *slog.Logger

	snap    atomic.Pointer[snapshot] // I/O path reads only this
	gate    *gate
	rlock   *rebuild.RangeLock // shared with rebuild jobs
	limiter *rebuild.Limiter
	history *rebuild.History
	bg      sync.WaitGroup // instance closers and rebuild watchers
	inline  bool           // run one child I/O inline (!cfg.IsolateChildIO)
	wdStop  chan struct{}  // closed to stop the watchdog and the intent rotator
	wdDone  sync.WaitGroup // the watchdog and the intent rotator
	intent  *intent        // nil unless cfg.WriteIntent
	readSeq atomic.Uint32  // rotates the read policy's tie-break
	// jobs counts rebuild jobs whose copy tasks may still run: a stopped
	// job's task can still be copying a segment after its child left the
	// snapshot, so writes keep taking the range lock until it is 0.
	jobs atomic.Int32

	mu       sync.Mutex // control path: guards children, shutdown, stopping, broken; not taken on the I/O fast path (the failure path holds it while persisting NexusInfo)
	children []*child
	shutdown bool  // Shutdown finished its work
	stopping bool  // Shutdown started
	broken   error // set when NexusInfo could not be persisted: I/O fails

	isBroken atomic.Bool // broken != nil, for the I/O path
}

// Name returns the nexus name.
func (n *Nexus) Name() string { return n.cfg.Name }

// UUID returns the nexus UUID.
func (n *Nexus) UUID() string { return n.cfg.UUID }

// Size is the nexus size in bytes.
func (n *Nexus) Size() int64 { return n.size }

// BlockSize is the nexus block size.
func (n *Nexus) BlockSize() int { return n.blockSize }

// publishLocked builds and installs a new I/O snapshot from the children.
func (n *Nexus) publishLocked() {
	s := &snapshot{}
	for _, c := range n.children {
		switch c.state {
		case ChildOpen:
			s.healthy = append(s.healthy, c.inst)
		case ChildRebuilding:
			s.rebuilding = append(s.rebuilding, target{inst: c.inst, job: c.job})
			// A partial rebuild keeps logging as write intent: a crash
			// mid-rebuild may leave an unacknowledged write on the source
			// but not the destination in a segment the job had not planned
			// to copy; the next (partial) rebuild must copy it too.
			if c.log != nil {
				s.logs = append(s.logs, c.log)
			}
		case ChildFaulted, ChildOffline:
			if c.log != nil {
				s.logs = append(s.logs, c.log)
			}
		}
	}
	n.snap.Store(s)
}
