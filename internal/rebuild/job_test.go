package rebuild

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

func mallocs(t *testing.T, size int64) (*blockdev.Malloc, *blockdev.Malloc) {
	src, _ := blockdev.NewMalloc("src", size, 512)
	dst, _ := blockdev.NewMalloc("dst", size, 512)
	return src, dst
}

func same(t *testing.T, a, b blockdev.Device) {
	t.Helper()
	x, y := make([]byte, a.Size()), make([]byte, b.Size())
	a.ReadAt(x, 0)
	b.ReadAt(y, 0)
	if !bytes.Equal(x, y) {
		t.Fatal("devices differ")
	}
}

func TestJobFullSkipsUnallocated(t *testing.T) {
	const size, seg = 8 << 20, 1 << 20 // malloc chunks are 1 MiB
	src, dst := mallocs(t, size)
	src.WriteAt(bytes.Repeat([]byte{1}, 4096), 0)
	src.WriteAt(bytes.Repeat([]byte{2}, 4096), 5<<20)
	dst.WriteAt(bytes.Repeat([]byte{9}, 4096), 3<<20) // stale data must go
	j, err := Start(Config{Src: src, Dst: dst, Size: size, SegmentSize: seg})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := j.Stats()
	if st.BytesCopied != 2*seg || st.BytesSkipped != 6*seg || st.State != Completed || st.Percent != 100 {
		t.Fatalf("stats %+v", st)
	}
	same(t, src, dst)
}

func TestJobPartialAndUnevenTail(t *testing.T) {
	const size, seg = 1<<20 + 4096, 64 << 10
	src, dst := mallocs(t, size)
	src.WriteAt(bytes.Repeat([]byte{7}, size), 0)
	b := NewBitmap((size + seg - 1) / seg)
	b.Set(2)
	b.Set(16) // the 4 KiB tail segment
	j, err := Start(Config{Src: src, Dst: dst, Size: size, SegmentSize: seg, Segments: b, Tasks: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.BytesCopied != seg+4096 || st.SegmentsCopied != 2 || st.BytesTotal != seg+4096 {
		t.Fatalf("stats %+v", st)
	}
	got := make([]byte, 4096)
	dst.ReadAt(got, 16*seg)
	if got[0] != 7 {
		t.Fatal("tail not copied")
	}
	dst.ReadAt(got, 3*seg)
	if got[0] != 0 {
		t.Fatal("clean segment copied")
	}
}

func TestJobPauseResumeStop(t *testing.T) {
	const size, seg = 4 << 20, 64 << 10
	src, dst := mallocs(t, size)
	src.WriteAt(bytes.Repeat([]byte{7}, size), 0)
	j, err := Start(Config{Src: src, Dst: dst, Size: size, SegmentSize: seg, Limiter: NewLimiter(1<<20, 64<<10)})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := j.Pause(); !errors.Is(err, ErrBadState) {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	p1 := j.Progress()
	time.Sleep(100 * time.Millisecond)
	if p2 := j.Progress(); p2.BytesDone != p1.BytesDone || p2.State != Paused {
		t.Fatalf("paused job moved: %+v -> %+v", p1, p2)
	}
	if err := j.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := j.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("wait: %v", err)
	}
	if j.Progress().State != Stopped || j.Resume() == nil {
		t.Fatal("stopped job")
	}
}

func TestJobFailure(t *testing.T) {
	const size, seg = 1 << 20, 64 << 10
	src, dst := mallocs(t, size)
	src.WriteAt(bytes.Repeat([]byte{7}, size), 0)
	f := blockdev.NewFault(dst)
	f.Inject(blockdev.FaultRule{Ops: blockdev.OpWrite, Off: 5 * seg, Len: seg})
	j, _ := Start(Config{Src: src, Dst: f, Size: size, SegmentSize: seg})
	if err := j.Wait(context.Background()); !errors.Is(err, blockdev.ErrIO) {
		t.Fatalf("wait: %v", err)
	}
	if st := j.Stats(); st.State != Failed || st.Err == "" {
		t.Fatalf("%+v", st)
	}
}

// TestJobRangeLock checks a copy never interleaves with a write holding
// the same segment shared.
func TestJobRangeLock(t *testing.T) {
	const size, seg = 1 << 20, 64 << 10
	src, dst := mallocs(t, size)
	src.WriteAt(bytes.Repeat([]byte{7}, size), 0)
	lock := NewRangeLock()
	h := lock.LockShared(3, 3)
	j, _ := Start(Config{Src: src, Dst: dst, Size: size, SegmentSize: seg, Lock: lock, Tasks: 1})
	time.Sleep(50 * time.Millisecond)
	if !j.Pending(3, 3) || j.Pending(0, 0) {
		t.Fatalf("pending: seg 3 %v seg 0 %v", j.Pending(3, 3), j.Pending(0, 0))
	}
	if st := j.Progress(); st.SegmentsDone != 3 {
		t.Fatalf("copy passed a locked segment: %+v", st)
	}
	lock.Unlock(h)
	if err := j.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	same(t, src, dst)
}

func TestHistory(t *testing.T) {
	h := NewHistory(2)
	h.Add(Record{Child: "a"})
	h.Add(Record{Child: "b"})
	h.Add(Record{Child: "c"})
	r := h.Records()
	if len(r) != 2 || r[0].Child != "b" || r[1].Child != "c" {
		t.Fatalf("%+v", r)
	}
}
