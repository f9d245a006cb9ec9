package pool

import "fmt"

// Thick replicas keep their space guarantee across snapshots. A thick
// replica owns a cluster for every logical cluster when it is created; a
// snapshot takes those clusters, and the replica's later writes need new
// ones (copy-on-write). The pool keeps that many clusters free for it:
// the reservation of a thick replica is its logical clusters not in its
// own map, and
//
//	free clusters − Σ reservations ≥ 0
//
// holds after every operation that takes space: a thin first write
// needs one spare cluster beyond the reservations, a thick create or grow
// as many as it allocates, and a snapshot of a thick replica as many as
// the replica owns (they move to the snapshot and become reservation).
// A thick replica's own first writes consume its reservation and always
// find space. Reservations are derived from the maps (nothing on disk),
// so import, replay and crash recovery need nothing extra.

// reservedLocked is the sum of thick replicas' reservations. Caller holds
// p.mu.
func (p *Pool) reservedLocked() int64 {
	var r int64
	for _, v := range p.st.vols {
		if v.thin() || v.snapshot() || v.destroyed.Load() {
			continue
		}
		if need := int64(p.st.clustersFor(v.size.Load())) - v.owned.Load(); need > 0 {
			r += need
		}
	}
	return r
}

// spareLocked is the number of free clusters beyond the thick replicas'
// reservations (negative when a pool written before reservations existed
// is over-committed). Caller holds p.mu.
func (p *Pool) spareLocked() int64 { return p.st.freeClusters() - p.reservedLocked() }

// needSpareLocked fails with ErrNoSpace unless n clusters are spare.
// Caller holds p.mu.
func (p *Pool) needSpareLocked(what string, n int64) error {
	if s := p.spareLocked(); s < n {
		return fmt.Errorf("pool %s: %s needs %d free clusters beyond those kept for thick replicas, %d are: %w",
			p.label.Name, what, n, max(s, 0), ErrNoSpace)
	}
	return nil
}
