package nexus

import "github.com/kura-io/kura/internal/rebuild"

// snapshot is the immutable child set the I/O path reads through an
// atomic pointer. Admin operations build a new one under Nexus.mu.
type snapshot struct {
	healthy    []*instance // serve reads and writes
	rebuilding []target    // write-only rebuild destinations
	logs       []*rebuild.DirtyLog
}

// target is a rebuild destination.
type target struct {
	inst *instance
	job  *rebuild.Job // nil until the job started: then every write goes to it
}

// pickReader returns the healthy instance with the fewest outstanding
// I/Os, skipping those in tried. Ties are broken by scanning from start
// (the caller rotates it), so equally busy mirrors share reads instead of
// the first child taking every read at low queue depth.
func (s *snapshot) pickReader(tried []*instance, start uint32) *instance {
	var best *instance
	var bestN int64
	k := len(s.healthy)
outer:
	for j := range k {
		in := s.healthy[(int(start%uint32(k))+j)%k]
		for _, t := range tried {
			if t == in {
				continue outer
			}
		}
		n := in.outstanding.Load()
		if best == nil || n < bestN {
			best, bestN = in, n
		}
	}
	return best
}
