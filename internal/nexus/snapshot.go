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
// I/Os, skipping those in tried.
func (s *snapshot) pickReader(tried []*instance) *instance {
	var best *instance
	var bestN int64
outer:
	for _, in := range s.healthy {
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
