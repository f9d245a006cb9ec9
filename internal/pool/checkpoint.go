package pool

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/google/uuid"
)

// Checkpoint and journal headers. Both carry the pool UUID so metadata of
// an earlier pool on the same device is never mistaken for this one's.
const (
	ckptMagic  = "KCKP"
	jrnlMagic  = "KJNL"
	ckptHdrLen = 48 // magic[4] version u32 uuid[16] gen u64 len u64 crc u32 pad u32
	jrnlHdrLen = 48 // magic[4] version u32 uuid[16] gen u64 pos u32 nblocks u32 len u32 crc u32
)

// encodeState serializes s as a checkpoint payload.
func encodeState(s *state) []byte {
	e := enc{}
	e.u32(s.nextID)
	e.u32(s.frontier)
	ids := make([]uint32, 0, len(s.vols))
	for id := range s.vols {
		ids = append(ids, id)
	}
	// Parents before children, so decoding can link parents directly.
	slices.SortFunc(ids, func(a, b uint32) int {
		return cmp.Or(cmp.Compare(depth(s.vols[a]), depth(s.vols[b])), cmp.Compare(a, b))
	})
	e.u32(uint32(len(ids)))
	for _, id := range ids {
		v := s.vols[id]
		e.u32(v.id)
		e.u32(v.flags)
		e.u32(v.parentID)
		e.u32(v.origin)
		e.u64(uint64(v.size.Load()))
		e.u64(uint64(v.created))
		e.bytes(v.uuid[:])
		e.str(v.name)
		e.u32(v.view.Load().through)
		runs := v.cm().runs()
		e.u32(uint32(len(runs)))
		for _, r := range runs {
			e.u32(r.l)
			e.u32(r.v)
			e.u32(r.n)
		}
	}
	for _, set := range []map[uint32]struct{}{s.dirty, s.window} {
		cl := sortedKeys(set)
		e.u32(uint32(len(cl)))
		for _, c := range cl {
			e.u32(c)
		}
	}
	return e.b
}

func depth(v *volume) int {
	n := 0
	for p := v.view.Load().parent; p != nil && n < 1<<16; p = p.view.Load().parent {
		n++
	}
	return n
}

func sortedKeys(set map[uint32]struct{}) []uint32 {
	out := make([]uint32, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// decodeState parses a checkpoint payload for the pool described by l.
// Every declared count is checked against the remaining input before
// anything is allocated for it.
func decodeState(l *Label, b []byte) (*state, error) {
	s := newState(l)
	d := dec{b: b}
	s.nextID = d.u32()
	s.frontier = d.u32()
	if s.frontier > s.clusters {
		return nil, corrupt("frontier %d beyond %d clusters", s.frontier, s.clusters)
	}
	nv := d.count(52)
	if uint32(nv) > s.maxVols {
		return nil, corrupt("%d volumes, limit %d", nv, s.maxVols)
	}
	for i := 0; i < nv; i++ {
		v := &volume{id: d.u32(), flags: d.u32(), parentID: d.u32(), origin: d.u32()}
		size := int64(d.u64())
		v.created = int64(d.u64())
		copy(v.uuid[:], d.take(16))
		v.name = d.str(maxNameLen)
		through := d.u32()
		if d.bad {
			return nil, corrupt("truncated volume record")
		}
		if err := s.checkNew(v.id, v.name, v.uuid); err != nil {
			return nil, err
		}
		if v.id >= s.nextID || v.flags&^knownFlags != 0 {
			return nil, corrupt("volume %d: bad id or flags", v.id)
		}
		if err := s.checkSize(size); err != nil {
			return nil, err
		}
		var parent *volume
		if v.parentID != 0 {
			if parent = s.vols[v.parentID]; parent == nil {
				return nil, corrupt("volume %d: parent %d not defined before it", v.id, v.parentID)
			}
		}
		v.size.Store(size)
		n := s.clustersFor(size)
		if !s.roomFor(n) {
			return nil, corrupt("volumes exceed %d logical clusters in total", uint64(maxTotalLogical))
		}
		if through > n {
			return nil, corrupt("volume %d: read-through limit %d beyond %d clusters", v.id, through, n)
		}
		v.setView(newCmap(n), parent, through)
		s.add(v)
		nr := d.count(12)
		for j := 0; j < nr; j++ {
			if err := s.setRun(v, mrun{d.u32(), d.u32(), d.u32()}, true); err != nil {
				return nil, err
			}
		}
	}
	for k, set := range []map[uint32]struct{}{s.dirty, s.window} {
		n := d.count(4)
		for i := 0; i < n; i++ {
			c := d.u32()
			if c >= s.frontier || s.used.get(c) {
				return nil, corrupt("list %d: cluster %d reused or beyond frontier", k, c)
			}
			s.used.set(c)
			set[c] = struct{}{}
		}
	}
	if d.bad || len(d.b) != 0 {
		return nil, corrupt("checkpoint payload has bad length")
	}
	return s, nil
}

// encodeSlot frames a checkpoint payload for the slot of generation gen.
func encodeSlot(u uuid.UUID, gen uint64, payload []byte) []byte {
	n := alignUp(int64(ckptHdrLen+len(payload)), labelSize)
	b := make([]byte, n)
	e := enc{b: b[:0]}
	e.bytes([]byte(ckptMagic))
	e.u32(formatVersion)
	e.bytes(u[:])
	e.u64(gen)
	e.u64(uint64(len(payload)))
	copy(b[ckptHdrLen:], payload)
	c := crc(b[:40]) ^ crc(payload)
	e.u32(c)
	return b
}

// decodeSlotHeader validates a slot header and returns gen and payload length.
func decodeSlotHeader(u uuid.UUID, b []byte, slotSize int64) (gen uint64, n int64, err error) {
	if len(b) < ckptHdrLen || !bytes.Equal(b[:4], []byte(ckptMagic)) {
		return 0, 0, corrupt("checkpoint: no magic")
	}
	d := dec{b: b[4:ckptHdrLen]}
	ver := d.u32()
	id := d.take(16)
	gen = d.u64()
	n = int64(d.u64())
	if ver != formatVersion || !bytes.Equal(id, u[:]) {
		return 0, 0, corrupt("checkpoint: other version or pool")
	}
	if n < 0 || n > slotSize-ckptHdrLen {
		return 0, 0, corrupt("checkpoint: length %d", n)
	}
	return gen, n, nil
}

// checkSlot verifies the checksum of a full slot read (header + payload).
func checkSlot(b []byte, n int64) ([]byte, error) {
	payload := b[ckptHdrLen : ckptHdrLen+n]
	d := dec{b: b[40:44]}
	if d.u32() != crc(b[:40])^crc(payload) {
		return nil, corrupt("checkpoint checksum mismatch")
	}
	return payload, nil
}

// FuzzDecode is the fuzzing entry point shared by tests: it decodes a
// checkpoint payload and, if it parses, a journal record stream on top.
func fuzzDecode(l *Label, ckpt, recs []byte) error {
	s, err := decodeState(l, ckpt)
	if err != nil {
		return err
	}
	if err := s.applyAll(recs); err != nil {
		return err
	}
	return s.verify()
}
