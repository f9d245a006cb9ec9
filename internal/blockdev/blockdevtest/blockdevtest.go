// Package blockdevtest is the conformance suite for blockdev.Device
// implementations. Every implementation runs it from its tests:
//
//	blockdevtest.RunWith(t, blockdevtest.Options{ZeroesUnwritten: true},
//		func(t *testing.T) blockdev.Device { ... return dev })
//
// open is called once per subtest and must return a fresh (or at least
// reusable) device of at least MinSize bytes; the suite closes it.
package blockdevtest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

// MinSize is the device size the suite needs for full coverage; smaller
// devices skip the cases that do not fit.
const MinSize = 8 << 20

// Options describes what an implementation promises beyond the contract.
type Options struct {
	// ZeroesUnwritten: never-written blocks read as zeros.
	ZeroesUnwritten bool
	// SupportsUnmapZeroes: reads of an unmapped range return zeros.
	SupportsUnmapZeroes bool
}

// Run runs the suite with no optional guarantees.
func Run(t *testing.T, open func(t *testing.T) blockdev.Device) {
	RunWith(t, Options{}, open)
}

// RunWith runs the suite, checking the guarantees opts claims.
func RunWith(t *testing.T, opts Options, open func(t *testing.T) blockdev.Device) {
	tests := []struct {
		name string
		f    func(t *testing.T, d blockdev.Device, opts Options)
	}{
		{"Geometry", testGeometry},
		{"RoundTrip", testRoundTrip},
		{"Unwritten", testUnwritten},
		{"Misaligned", testMisaligned},
		{"OutOfRange", testOutOfRange},
		{"ZeroLength", testZeroLength},
		{"ConcurrentDisjoint", testConcurrent},
		{"Flush", testFlush},
		{"WriteZeroes", testWriteZeroes},
		{"Unmap", testUnmap},
		{"BuffersNotRetained", testNotRetained},
		{"UnalignedMemory", testUnalignedMemory},
		{"Close", testClose},
		{"CloseWhileBusy", testCloseWhileBusy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := open(t)
			t.Cleanup(func() { d.Close() })
			tc.f(t, d, opts)
		})
	}
}

// pattern returns n bytes of data determined by seed.
func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return p
}

func mustWrite(t *testing.T, d blockdev.Device, p []byte, off int64) {
	t.Helper()
	n, err := d.WriteAt(p, off)
	if err != nil || n != len(p) {
		t.Fatalf("WriteAt(len %d, off %d) = %d, %v", len(p), off, n, err)
	}
}

func mustRead(t *testing.T, d blockdev.Device, n int, off int64) []byte {
	t.Helper()
	p := make([]byte, n)
	m, err := d.ReadAt(p, off)
	if err != nil || m != n {
		t.Fatalf("ReadAt(len %d, off %d) = %d, %v", n, off, m, err)
	}
	return p
}

// expectEqual reports the first differing block.
func expectEqual(t *testing.T, what string, got, want []byte, bs int) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	for i := 0; i < len(want); i += bs {
		end := min(i+bs, len(want))
		if !bytes.Equal(got[i:end], want[i:end]) {
			t.Fatalf("%s: data differs in block at byte %d of %d", what, i, len(want))
		}
	}
	t.Fatalf("%s: length %d, want %d", what, len(got), len(want))
}

func isZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

func testGeometry(t *testing.T, d blockdev.Device, _ Options) {
	bs := d.BlockSize()
	if bs != 512 && bs != 4096 {
		t.Fatalf("BlockSize = %d, want 512 or 4096", bs)
	}
	if d.Size() <= 0 || d.Size()%int64(bs) != 0 {
		t.Fatalf("Size = %d, want a positive multiple of %d", d.Size(), bs)
	}
	if d.Size() < MinSize {
		t.Logf("device is %d bytes (< %d): some cases are skipped", d.Size(), MinSize)
	}
}

func testRoundTrip(t *testing.T, d blockdev.Device, _ Options) {
	bs := d.BlockSize()
	size := d.Size()
	lengths := []int{bs, 2 * bs, 7 * bs, 4096, 8 * bs, 64 << 10, 128<<10 + bs, 256<<10 + 3*bs, 1 << 20}
	seed := uint64(1)
	for _, n := range lengths {
		if n%bs != 0 || int64(n) > size {
			continue
		}
		offs := []int64{0, int64(bs), 3 * 4096, size - int64(n), (size / 2) / int64(bs) * int64(bs)}
		for _, off := range offs {
			if off < 0 || off+int64(n) > size {
				continue
			}
			seed++
			want := pattern(seed, n)
			mustWrite(t, d, want, off)
			got := mustRead(t, d, n, off)
			expectEqual(t, fmt.Sprintf("len %d off %d", n, off), got, want, bs)
		}
	}
	// Overwrite part of an earlier write: neighbours keep their data.
	if size >= 64*int64(bs) {
		base := pattern(100, 16*bs)
		mustWrite(t, d, base, 0)
		mid := pattern(101, 4*bs)
		mustWrite(t, d, mid, int64(6*bs))
		copy(base[6*bs:], mid)
		expectEqual(t, "partial overwrite", mustRead(t, d, 16*bs, 0), base, bs)
	}
}

func testUnwritten(t *testing.T, d blockdev.Device, opts Options) {
	if !opts.ZeroesUnwritten {
		t.Skip("device does not promise zeroed unwritten blocks")
	}
	bs := d.BlockSize()
	for _, off := range []int64{0, d.Size() / 2 / int64(bs) * int64(bs), d.Size() - int64(bs)} {
		if !isZero(mustRead(t, d, bs, off)) {
			t.Fatalf("never-written block at %d is not zero", off)
		}
	}
}

// writeKnown fills the first blocks with a pattern and returns it.
func writeKnown(t *testing.T, d blockdev.Device, n int) []byte {
	want := pattern(7, n)
	mustWrite(t, d, want, 0)
	return want
}

func testMisaligned(t *testing.T, d blockdev.Device, _ Options) {
	bs := d.BlockSize()
	want := writeKnown(t, d, 8*bs)
	junk := bytes.Repeat([]byte{0xAB}, 4*bs)
	cases := []struct {
		off int64
		n   int
	}{{1, bs}, {int64(bs / 2), bs}, {0, bs - 1}, {0, bs + 1}, {int64(bs), 3}, {-int64(bs), bs}}
	for _, c := range cases {
		if _, err := d.WriteAt(junk[:c.n], c.off); !errors.Is(err, blockdev.ErrMisaligned) {
			t.Errorf("WriteAt(len %d, off %d) error %v, want ErrMisaligned", c.n, c.off, err)
		}
		if _, err := d.ReadAt(make([]byte, c.n), c.off); !errors.Is(err, blockdev.ErrMisaligned) {
			t.Errorf("ReadAt(len %d, off %d) error %v, want ErrMisaligned", c.n, c.off, err)
		}
		if err := d.Unmap(c.off, int64(c.n)); !errors.Is(err, blockdev.ErrMisaligned) {
			t.Errorf("Unmap(%d, %d) error %v, want ErrMisaligned", c.off, c.n, err)
		}
		if err := d.WriteZeroes(c.off, int64(c.n)); !errors.Is(err, blockdev.ErrMisaligned) {
			t.Errorf("WriteZeroes(%d, %d) error %v, want ErrMisaligned", c.off, c.n, err)
		}
	}
	expectEqual(t, "data after misaligned calls", mustRead(t, d, 8*bs, 0), want, bs)
}

func testOutOfRange(t *testing.T, d blockdev.Device, _ Options) {
	bs := d.BlockSize()
	size := d.Size()
	n := 4 * bs
	if int64(n) > size {
		t.Skip("device too small")
	}
	tailOff := size - int64(n)
	want := pattern(9, n)
	mustWrite(t, d, want, tailOff)
	junk := bytes.Repeat([]byte{0xCD}, 2*n)
	cases := []struct {
		off int64
		n   int
	}{{size, bs}, {size - int64(bs), 2 * bs}, {tailOff, 2 * n}, {size + 1<<20, bs}}
	for _, c := range cases {
		if c.off%int64(bs) != 0 || c.n%bs != 0 {
			continue
		}
		if _, err := d.WriteAt(junk[:c.n], c.off); !errors.Is(err, blockdev.ErrOutOfRange) {
			t.Errorf("WriteAt(len %d, off %d) error %v, want ErrOutOfRange", c.n, c.off, err)
		}
		if _, err := d.ReadAt(make([]byte, c.n), c.off); !errors.Is(err, blockdev.ErrOutOfRange) {
			t.Errorf("ReadAt(len %d, off %d) error %v, want ErrOutOfRange", c.n, c.off, err)
		}
		if err := d.Unmap(c.off, int64(c.n)); !errors.Is(err, blockdev.ErrOutOfRange) {
			t.Errorf("Unmap(%d, %d) error %v, want ErrOutOfRange", c.off, c.n, err)
		}
		if err := d.WriteZeroes(c.off, int64(c.n)); !errors.Is(err, blockdev.ErrOutOfRange) {
			t.Errorf("WriteZeroes(%d, %d) error %v, want ErrOutOfRange", c.off, c.n, err)
		}
	}
	expectEqual(t, "tail after out-of-range calls", mustRead(t, d, n, tailOff), want, bs)
}

func testZeroLength(t *testing.T, d blockdev.Device, _ Options) {
	if n, err := d.ReadAt(nil, 0); n != 0 || err != nil {
		t.Errorf("ReadAt(nil, 0) = %d, %v; want 0, nil", n, err)
	}
	if n, err := d.WriteAt([]byte{}, int64(d.BlockSize())); n != 0 || err != nil {
		t.Errorf("WriteAt(empty) = %d, %v; want 0, nil", n, err)
	}
}

func testConcurrent(t *testing.T, d blockdev.Device, _ Options) {
	bs := d.BlockSize()
	const workers, rounds = 8, 16
	region := int64(16 * bs) // per worker
	if region*workers > d.Size() {
		t.Skip("device too small")
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			base := int64(w) * region
			for r := range rounds {
				n := (1 + r%4) * bs
				off := base + int64((r*3)%12)*int64(bs)
				p := pattern(uint64(w*1000+r), n)
				if _, err := d.WriteAt(p, off); err != nil {
					errs <- err
					return
				}
				got := make([]byte, n)
				if _, err := d.ReadAt(got, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, p) {
					errs <- fmt.Errorf("worker %d round %d: read back differs", w, r)
					return
				}
			}
			// Final state: a full-region write each.
			if _, err := d.WriteAt(pattern(uint64(w+1)<<32, int(region)), base); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range workers {
		got := mustRead(t, d, int(region), int64(w)*region)
		expectEqual(t, fmt.Sprintf("worker %d region", w), got, pattern(uint64(w+1)<<32, int(region)), bs)
	}
}

func testFlush(t *testing.T, d blockdev.Device, _ Options) {
	bs := d.BlockSize()
	want := writeKnown(t, d, 4*bs)
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	expectEqual(t, "after flush", mustRead(t, d, 4*bs, 0), want, bs)
	if err := d.Flush(); err != nil {
		t.Fatalf("second Flush: %v", err)
	}
}

func testWriteZeroes(t *testing.T, d blockdev.Device, _ Options) {
	bs := d.BlockSize()
	n := 64 * bs
	if int64(n) > d.Size() {
		n = int(d.Size())
	}
	want := writeKnown(t, d, n)
	lo, hi := 8*bs, n-8*bs
	if err := d.WriteZeroes(int64(lo), int64(hi-lo)); err != nil {
		t.Fatalf("WriteZeroes: %v", err)
	}
	clear(want[lo:hi])
	expectEqual(t, "after WriteZeroes", mustRead(t, d, n, 0), want, bs)
	if err := d.WriteZeroes(0, 0); err != nil {
		t.Errorf("WriteZeroes(0, 0): %v", err)
	}
	// A large zeroing (1 MiB, crossing allocation granules) too.
	if d.Size() >= 4<<20 {
		off := int64(1 << 20)
		mustWrite(t, d, pattern(11, 2<<20), off)
		if err := d.WriteZeroes(off+int64(bs), 1<<20); err != nil {
			t.Fatalf("WriteZeroes 1MiB: %v", err)
		}
		if !isZero(mustRead(t, d, 1<<20, off+int64(bs))) {
			t.Fatal("1 MiB WriteZeroes range not zero")
		}
	}
}

func testUnmap(t *testing.T, d blockdev.Device, opts Options) {
	bs := d.BlockSize()
	n := 64 * bs
	if int64(n) > d.Size() {
		n = int(d.Size())
	}
	want := writeKnown(t, d, n)
	lo, hi := 8*bs, n-8*bs
	if err := d.Unmap(int64(lo), int64(hi-lo)); err != nil {
		t.Fatalf("Unmap: %v", err)
	}
	got := mustRead(t, d, n, 0)
	expectEqual(t, "before unmapped range", got[:lo], want[:lo], bs)
	expectEqual(t, "after unmapped range", got[hi:], want[hi:], bs)
	for i := lo; i < hi; i += bs {
		blk := got[i : i+bs]
		if isZero(blk) {
			continue
		}
		if opts.SupportsUnmapZeroes {
			t.Fatalf("unmapped block at %d not zero", i)
		}
		if !bytes.Equal(blk, want[i:i+bs]) {
			t.Fatalf("unmapped block at %d is neither zero nor the old data", i)
		}
	}
	// The range stays writable.
	p := pattern(12, 2*bs)
	mustWrite(t, d, p, int64(lo))
	expectEqual(t, "write after unmap", mustRead(t, d, 2*bs, int64(lo)), p, bs)
}

func testNotRetained(t *testing.T, d blockdev.Device, _ Options) {
	bs := d.BlockSize()
	p := pattern(13, 4*bs)
	want := bytes.Clone(p)
	mustWrite(t, d, p, 0)
	for i := range p {
		p[i] ^= 0xFF
	}
	expectEqual(t, "after mutating the write buffer", mustRead(t, d, 4*bs, 0), want, bs)
	r := make([]byte, 4*bs)
	if _, err := d.ReadAt(r, 0); err != nil {
		t.Fatal(err)
	}
	snap := bytes.Clone(r)
	mustWrite(t, d, pattern(14, 4*bs), 0)
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r, snap) {
		t.Fatal("read buffer changed after ReadAt returned")
	}
}

func testUnalignedMemory(t *testing.T, d blockdev.Device, _ Options) {
	bs := d.BlockSize()
	for _, shift := range []int{1, 3, 8, 512, 4095} {
		for _, n := range []int{bs, 5 * bs, 300 << 10} { // 300 KiB spans bounce buffers
			if int64(n) > d.Size() {
				continue
			}
			raw := make([]byte, n+shift)
			w := raw[shift:]
			copy(w, pattern(uint64(shift*7+n), n))
			off := int64(bs)
			if off+int64(n) > d.Size() {
				off = 0
			}
			mustWrite(t, d, w, off)
			rraw := make([]byte, n+shift)
			r := rraw[shift:]
			if m, err := d.ReadAt(r, off); err != nil || m != n {
				t.Fatalf("ReadAt unaligned: %d, %v", m, err)
			}
			expectEqual(t, fmt.Sprintf("unaligned shift %d len %d", shift, n), r, w, bs)
		}
	}
}

func testClose(t *testing.T, d blockdev.Device, _ Options) {
	bs := d.BlockSize()
	mustWrite(t, d, pattern(15, bs), 0)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	p := make([]byte, bs)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, blockdev.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	_, err := d.ReadAt(p, 0)
	check("ReadAt", err)
	_, err = d.WriteAt(p, 0)
	check("WriteAt", err)
	check("Flush", d.Flush())
	check("Unmap", d.Unmap(0, int64(bs)))
	check("WriteZeroes", d.WriteZeroes(0, int64(bs)))
	check("Close", d.Close())
}

// testCloseWhileBusy closes the device under concurrent I/O: every call
// either succeeds or fails with ErrClosed, and none hangs or crashes.
func testCloseWhileBusy(t *testing.T, d blockdev.Device, _ Options) {
	bs := d.BlockSize()
	const workers = 4
	if int64(workers*8*bs) > d.Size() {
		t.Skip("device too small")
	}
	var wg sync.WaitGroup
	started := make(chan struct{}, workers)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			p := pattern(uint64(w), 8*bs)
			off := int64(w * 8 * bs)
			for i := 0; ; i++ {
				var err error
				switch i % 4 {
				case 0:
					_, err = d.WriteAt(p, off)
				case 1:
					_, err = d.ReadAt(p, off)
				case 2:
					err = d.WriteZeroes(off, int64(bs))
				case 3:
					err = d.Flush()
				}
				if i == 4 {
					started <- struct{}{}
				}
				if err != nil {
					if !errors.Is(err, blockdev.ErrClosed) {
						errs <- fmt.Errorf("worker %d op %d: %w", w, i%4, err)
					}
					if i < 4 {
						started <- struct{}{}
					}
					return
				}
			}
		})
	}
	for range workers {
		<-started
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close under load: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
