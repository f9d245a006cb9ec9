package pool

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

// fuzzLabel is the geometry FuzzDecodeMetadata decodes against.
var fuzzLabel = Label{Version: formatVersion, State: StateActive, ClusterSize: testCS, DeviceSize: 8 << 20,
	BlockSize: 4096, MaxVolumes: 64, SlotOffset: 4096, SlotSize: 64 << 10, JournalOff: 4096 + 128<<10,
	JournalSize: 64 << 10, DataOffset: 1 << 20, Clusters: 100, Name: "fuzz", UUID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}

// FuzzDecodeMetadata decodes a checkpoint payload followed by a journal
// record stream (split at a u32 prefix). Decoding must never panic or
// allocate beyond what the input backs; whatever decodes must satisfy all
// invariants and survive an encode/decode round trip.
func FuzzDecodeMetadata(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 4 {
			return
		}
		n := int(binary.LittleEndian.Uint32(b)) % (len(b) - 3)
		ckpt, recs := b[4:4+n], b[4+n:]
		l := fuzzLabel
		s, err := decodeState(&l, ckpt)
		if err != nil {
			return
		}
		if err := s.verify(); err != nil {
			t.Fatalf("decoded checkpoint fails verify: %v", err)
		}
		if err := s.applyAll(recs); err != nil {
			return
		}
		if err := s.verify(); err != nil {
			t.Fatalf("state after valid records fails verify: %v", err)
		}
		enc1 := encodeState(s)
		s2, err := decodeState(&l, enc1)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(encodeState(s2), enc1) {
			t.Fatal("encode/decode round trip differs")
		}
	})
}

// fuzzSeeds builds metadata of a small pool with replicas, snapshots and
// clones on the fuzz geometry: a checkpoint and a record stream.
func fuzzSeeds(tb testing.TB) [][]byte {
	s := newState(&fuzzLabel)
	var recs []byte
	add := func(r []byte) {
		if err := s.applyAll(r); err != nil {
			tb.Fatal(err)
		}
		recs = append(recs, r...)
	}
	v := &volume{id: 1, name: "r1", flags: flagThin, uuid: [16]byte{1}}
	v.size.Store(1 << 20)
	add(recIDs(recFrontier, 40))
	add(recCreateOf(v))
	add(recList(recWindow, []uint32{0, 1, 2, 3}))
	add(recSetMapOf(1, []mrun{{0, 1, 2}, {5, 3, 1}}))
	s1 := &volume{id: 2, name: "s1", uuid: [16]byte{2}}
	add(recSnapshotOf(1, s1))
	add(recSetMapOf(1, []mrun{{0, 4, 1}, {7, mZero, 1}}))
	c := &volume{id: 3, name: "c1", flags: flagThin | flagClone, parentID: 2, uuid: [16]byte{3}}
	c.size.Store(1 << 20)
	add(recCreateOf(c))
	add(recResizeOf(3, 2<<20))
	add(recIDs(recDestroy, 3))
	add(recIDs(recMerge, 2, 1))
	add(recList(recClean, []uint32{0}))
	ck := encodeState(newState(&fuzzLabel))
	full := encodeState(s)
	var out [][]byte
	for _, pair := range [][2][]byte{{ck, recs}, {full, nil}, {full, recs[:20]}} {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(pair[0])))
		out = append(out, append(append(b, pair[0]...), pair[1]...))
	}
	return out
}

var (
	imgOnce sync.Once
	imgData []byte
)

// fuzzImage returns the bytes of a small valid pool: replicas, a
// snapshot, a clone, journal records after the last checkpoint.
func fuzzImage(tb testing.TB) []byte {
	imgOnce.Do(func() {
		dev, _ := blockdev.NewMalloc("img", 4<<20, 4096)
		p, err := Create(ctx, dev, "img", CreateOptions{ClusterSize: testCS, UUID: fuzzLabel.UUID})
		if err != nil {
			tb.Fatal(err)
		}
		r, _ := p.CreateReplica(ctx, "r", ReplicaOptions{Size: 512 << 10, Thin: true})
		r.WriteAt(make([]byte, 4096), 0)
		p.CreateSnapshot(ctx, "r", "s", "")
		p.CloneSnapshot(ctx, "s", "c", "")
		r.WriteAt(bytes.Repeat([]byte{1}, 4096), 8192)
		p.CreateReplica(ctx, "thick", ReplicaOptions{Size: 128 << 10})
		r.Flush()
		imgData = make([]byte, dev.Size())
		dev.ReadAt(imgData, 0)
	})
	return bytes.Clone(imgData)
}

// FuzzImport overlays fuzz bytes on one metadata region of a valid pool
// image (b[0]: region 0 slot0, 1 slot1, 2 journal, 3 label; bit 7 fixes
// up the region's checksum so decoding past it is exercised) and imports.
// Import must fail cleanly or produce a pool that passes Check.
func FuzzImport(f *testing.F) {
	img := fuzzImage(f)
	l, err := decodeLabel(img)
	if err != nil {
		f.Fatal(err)
	}
	offs := []int64{l.SlotOffset, l.SlotOffset + l.SlotSize, l.JournalOff, 0}
	for i, off := range offs {
		f.Add(append([]byte{byte(i) | 0x80}, img[off:off+8192]...))
		f.Add(append([]byte{byte(i)}, img[off:off+512]...))
	}
	f.Fuzz(func(t *testing.T, b []byte) { fuzzOne(t, b, offs) })
}

func fuzzOne(t *testing.T, b []byte, offs []int64) {
	if len(b) < 2 || len(b) > 1<<16 {
		return
	}
	img := fuzzImage(t)
	region := int(b[0]&0x7f) % 4
	off := offs[region]
	copy(img[off:off+min(int64(len(b)-1), 1<<16)], b[1:])
	if b[0]&0x80 != 0 {
		fixCRC(img, region, off)
	}
	dev, _ := blockdev.NewMalloc("fz", int64(len(img)), 4096)
	dev.WriteAt(img, 0)
	p, err := Import(ctx, dev)
	if err != nil {
		return
	}
	if err := p.Check(ctx); err != nil {
		t.Fatalf("imported pool fails Check: %v", err)
	}
	for _, r := range p.Replicas() {
		buf := make([]byte, min(r.Size(), 1<<20))
		if _, err := r.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
}

// fixCRC recomputes the checksum of the region at off after fuzzing.
func fixCRC(img []byte, region int, off int64) {
	switch region {
	case 0, 1:
		n := binary.LittleEndian.Uint64(img[off+32:])
		if n > 1<<20 || int64(n)+off+ckptHdrLen > int64(len(img)) {
			return
		}
		c := crc(img[off:off+40]) ^ crc(img[off+ckptHdrLen:off+ckptHdrLen+int64(n)])
		binary.LittleEndian.PutUint32(img[off+40:], c)
	case 2:
		n := binary.LittleEndian.Uint32(img[off+40:])
		if int64(n)+off+jrnlHdrLen > int64(len(img)) {
			return
		}
		c := crc(img[off:off+44]) ^ crc(img[off+jrnlHdrLen:off+jrnlHdrLen+int64(n)])
		binary.LittleEndian.PutUint32(img[off+44:], c)
	case 3:
		binary.LittleEndian.PutUint32(img[labelSize-4:], crc(img[:labelSize-4]))
	}
}

// TestWriteFuzzSeeds refreshes the committed seed corpus
// (KURA_WRITE_FUZZ_SEEDS=1).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("KURA_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set KURA_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	write := func(target, name string, b []byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		os.MkdirAll(dir, 0o755)
		body := "go test fuzz v1\n[]byte(" + quote(b) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range fuzzSeeds(t) {
		write("FuzzDecodeMetadata", "seed-metadata-"+string(rune('a'+i)), s)
	}
	img := fuzzImage(t)
	l, _ := decodeLabel(img)
	names := []string{"slot0", "slot1", "journal", "label"}
	for i, off := range []int64{l.SlotOffset, l.SlotOffset + l.SlotSize, l.JournalOff, 0} {
		write("FuzzImport", "seed-valid-"+names[i], append([]byte{byte(i) | 0x80}, img[off:off+4096]...))
	}
}
