package pool

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
)

// Volume flags (on disk).
const (
	flagThin     = 1 << 0
	flagSnapshot = 1 << 1
	flagClone    = 1 << 2 // created by CloneSnapshot, or a snapshot taken in a clone's line
	knownFlags   = flagThin | flagSnapshot | flagClone
)

// volume is a replica, clone or snapshot: an id, a cluster map and an
// optional parent whose content shows through unallocated clusters.
// Every physical cluster belongs to exactly one volume's map (or to the
// pool's window/dirty sets), so refcounts are 1 by construction.
type volume struct {
	id      uint32
	name    string
	uuid    uuid.UUID
	flags   uint32
	origin  uint32 // snapshots: id of the volume the snapshot was taken of
	created int64  // unix nanoseconds

	// parentID mirrors parent for encoding; written under Pool.mu.
	parentID uint32

	size atomic.Int64 // bytes; written under Pool.mu
	// view is the map and parent as one atomically swapped pair, so a
	// lock-free reader never combines a new map with an old parent (or the
	// reverse). Swapped under Pool.mu + amu.
	view  atomic.Pointer[vview]
	owned atomic.Int64 // clusters in the map; written under Pool.mu
	// markers counts mZero entries in m; guarded by Pool.mu.
	markers int64

	destroyed atomic.Bool
	// frozen, when set, parks new writes while a snapshot switches maps.
	frozen atomic.Pointer[chan struct{}]

	// amu guards pending: first writes in progress per logical cluster,
	// and serializes publishing entries into m.
	amu     sync.Mutex
	pending map[uint32]chan struct{}

	rep  *Replica  // set for non-snapshot volumes of a live pool
	snap *Snapshot // set for snapshots of a live pool
}

// vview is an immutable (map, parent) pair; the map's entries mutate.
type vview struct {
	m      *cmap
	parent *volume
	// through bounds read-through: logical clusters >= through never
	// read the parent (set by shrinking; persisted).
	through uint32
}

func (v *volume) cm() *cmap { return v.view.Load().m }

// setView publishes a new (map, parent, through) view of v.
func (v *volume) setView(m *cmap, parent *volume, through uint32) {
	v.view.Store(&vview{m: m, parent: parent, through: through})
}

func (v *volume) thin() bool     { return v.flags&flagThin != 0 }
func (v *volume) snapshot() bool { return v.flags&flagSnapshot != 0 }

// state is the pool's metadata: what checkpoints hold and records change.
// In a live pool it is guarded by Pool.mu.
type state struct {
	clusters uint32 // physical clusters
	cs       int64
	maxVols  uint32

	nextID   uint32
	frontier uint32 // clusters >= frontier were never handed out since create
	vols     map[uint32]*volume
	names    map[string]*volume
	uuids    map[uuid.UUID]*volume

	// used has a bit per cluster that is mapped, dirty or in the window.
	used   bitmap
	dirty  map[uint32]struct{} // freed, not yet zeroed
	window map[uint32]struct{} // reserved zeroed clusters for data-first allocations
	mapped int64               // clusters referenced by maps
	// logical is the sum of all volumes' map lengths (see maxTotalLogical).
	logical uint64
	marks   int64 // mZero entries in all maps
}

func newState(l *Label) *state {
	return &state{clusters: uint32(l.Clusters), cs: l.ClusterSize, maxVols: l.MaxVolumes, nextID: 1,
		vols: map[uint32]*volume{}, names: map[string]*volume{}, uuids: map[uuid.UUID]*volume{},
		used: newBitmap(l.Clusters), dirty: map[uint32]struct{}{}, window: map[uint32]struct{}{}}
}

// roomFor reports whether n more logical clusters fit maxTotalLogical.
func (s *state) roomFor(n uint32) bool { return s.logical+uint64(n) <= maxTotalLogical }

// maxMarkers bounds mZero entries so a checkpoint always fits its slot.
func (s *state) maxMarkers() int64 { return int64(s.clusters) }

func (s *state) clustersFor(size int64) uint32 { return uint32((size + s.cs - 1) / s.cs) }

// children returns the volumes whose parent is v, by ascending id.
func (s *state) children(v *volume) []*volume {
	var out []*volume
	for _, c := range s.vols {
		if c.parentID == v.id {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *volume) int { return cmp.Compare(a.id, b.id) })
	return out
}

// freeClusters is the number of clusters neither mapped nor reserved.
func (s *state) freeClusters() int64 { return int64(s.clusters) - s.mapped }
