package pool

// Journal record types. Each record is: type u8, body length u32, body.
// The same apply code runs live (on the record just built) and in replay.
const (
	recCreate   = 1  // id, flags, parent, origin u32; size u64; created u64; uuid[16]; name
	recSetMap   = 2  // vol u32; runs (l, v, n u32)...: set entries, old clusters become dirty
	recDestroy  = 3  // vol u32: its clusters become dirty
	recResize   = 4  // vol u32; size u64: clusters past the end become dirty
	recSnapshot = 5  // src, id u32; created u64; uuid[16]; name: snapshot takes src's map
	recMerge    = 6  // snap, child u32: snapshot's entries move into its only child
	recReparent = 7  // child u32: its parent becomes its grandparent (after inflation)
	recWindow   = 8  // clusters u32...: free zeroed clusters reserved for data-first allocation
	recClean    = 9  // clusters u32...: dirty clusters, now zeroed, become free
	recDiscard  = 10 // clusters u32...: window clusters become dirty
	recFrontier = 11 // frontier u32: clusters below it were zeroed
)

// rec builds one encoded record.
type rec struct{ e enc }

func newRec(t uint8) *rec {
	r := &rec{}
	r.e.u8(t)
	r.e.u32(0)
	return r
}

func (r *rec) bytes() []byte {
	b := r.e.b
	n := uint32(len(b) - 5)
	b[1], b[2], b[3], b[4] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	return b
}

func recCreateOf(v *volume) []byte {
	r := newRec(recCreate)
	r.e.u32(v.id)
	r.e.u32(v.flags)
	r.e.u32(v.parentID)
	r.e.u32(v.origin)
	r.e.u64(uint64(v.size.Load()))
	r.e.u64(uint64(v.created))
	r.e.bytes(v.uuid[:])
	r.e.str(v.name)
	return r.bytes()
}

func recSetMapOf(vol uint32, runs []mrun) []byte {
	r := newRec(recSetMap)
	r.e.u32(vol)
	r.e.u32(uint32(len(runs)))
	for _, x := range runs {
		r.e.u32(x.l)
		r.e.u32(x.v)
		r.e.u32(x.n)
	}
	return r.bytes()
}

func recIDs(t uint8, ids ...uint32) []byte {
	r := newRec(t)
	for _, id := range ids {
		r.e.u32(id)
	}
	return r.bytes()
}

func recResizeOf(vol uint32, size int64) []byte {
	r := newRec(recResize)
	r.e.u32(vol)
	r.e.u64(uint64(size))
	return r.bytes()
}

func recSnapshotOf(src uint32, s *volume) []byte {
	r := newRec(recSnapshot)
	r.e.u32(src)
	r.e.u32(s.id)
	r.e.u64(uint64(s.created))
	r.e.bytes(s.uuid[:])
	r.e.str(s.name)
	return r.bytes()
}

func recList(t uint8, cl []uint32) []byte {
	r := newRec(t)
	r.e.u32(uint32(len(cl)))
	for _, c := range cl {
		r.e.u32(c)
	}
	return r.bytes()
}
