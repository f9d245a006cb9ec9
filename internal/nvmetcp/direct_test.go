package nvmetcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

// fillPattern writes p as the content at off of a device filled with
// patternAt: every 8-byte word holds its own byte offset.
func fillPattern(p []byte, off int64) {
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], uint64(off)+uint64(i))
	}
}

// directDevice opens an Async device of size bytes (4 KiB blocks), filled
// with fillPattern if fill is set, else zeroed.
type directDevice struct {
	name string
	open func(t *testing.T, size int64, fill bool) blockdev.Device
}

func directDevices() []directDevice {
	return []directDevice{
		{"fake", func(t *testing.T, size int64, fill bool) blockdev.Device {
			f := newFakeAsync(t, size, 4096)
			if fill {
				p := make([]byte, size)
				fillPattern(p, 0)
				if _, err := f.Device.WriteAt(p, 0); err != nil {
					t.Fatal(err)
				}
			}
			return f
		}},
		{"uring", func(t *testing.T, size int64, fill bool) blockdev.Device {
			p := make([]byte, size)
			if fill {
				fillPattern(p, 0)
			}
			path := filepath.Join(t.TempDir(), "disk.img")
			must(t, os.WriteFile(path, p, 0o600))
			u, err := blockdev.OpenUring(path, blockdev.FileOptions{BlockSize: 4096})
			if err != nil {
				t.Skipf("io_uring unavailable: %v", err)
			}
			t.Cleanup(func() { u.Close() }) // after the target's cleanup
			return u
		}},
	}
}

// TestDirectCompletionVerify: at queue depth over loopback TCP, with and
// without digests and SQ flow control, the device's reaper answers
// completions itself (the direct counter moves) next to the completer
// (reads of largeData and more, refused starts), and the data stays intact.
func TestDirectCompletionVerify(t *testing.T) {
	const size = 16 << 20
	for _, dv := range directDevices() {
		for _, dg := range []bool{false, true} {
			for _, sqflow := range []bool{false, true} {
				if dv.name == "uring" && dg != sqflow {
					continue // two combinations suffice there
				}
				t.Run(fmt.Sprintf("%s/digests=%v/sqflow=%v", dv.name, dg, sqflow), func(t *testing.T) {
					dev := dv.open(t, size, false)
					if f, ok := dev.(*fakeAsync); ok {
						f.refuseEvery = 13
					}
					tg := startTarget(t, TargetConfig{})
					must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("direct"), Device: dev, AllowAnyHost: true}))
					d := dial(t, tg, Config{SubNQN: NQNFor("direct"), IOQueues: 2, QueueSize: 64,
						HeaderDigest: dg, DataDigest: dg, SQFlowControl: sqflow})
					defer d.Close()
					rounds := 60
					if raceEnabled {
						rounds = 25
					}
					rwVerify(t, d, 32, rounds, size/32, 16, 4096)
					t.Logf("direct batches %d, %d of them short", tg.directWrites.Load(), tg.directShort.Load())
					if tg.directWrites.Load() == 0 {
						t.Fatal("no completion took the direct path")
					}
				})
			}
		}
	}
}

// TestBatchWriterPendingFirst: the tail of a direct write leaves before
// anything buffered, on both the Flush and the WriteData (writev) paths.
func TestBatchWriterPendingFirst(t *testing.T) {
	var out bytes.Buffer
	b := newBatchWriter(&out)
	b.mu.Lock()
	b.pending = []byte("tail1|")
	b.Write([]byte("next1|"))
	must(t, b.Flush())
	b.pending = []byte("tail2|")
	b.Write([]byte("hdr|"))
	must(t, b.WriteData(bytes.Repeat([]byte{'x'}, largeData), []byte("|dd")))
	must(t, b.Flush())
	if !b.idle() {
		t.Fatal("writer not idle after Flush")
	}
	b.mu.Unlock()
	want := "tail1|next1|tail2|hdr|" + string(bytes.Repeat([]byte{'x'}, largeData)) + "|dd"
	if out.String() != want {
		t.Fatalf("wrote %.40q…, want %.40q…", out.String(), want)
	}
	// A connection that is not a socket has no direct path.
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if q := newQueue(&Target{}, c1); q.sock.socket {
		t.Fatal("net.Pipe connection got a RawConn")
	}
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

// TestBatchWriterPendingError: a failed write of the pending tail fails
// the writer and drops the tail.
func TestBatchWriterPendingError(t *testing.T) {
	b := newBatchWriter(errWriter{})
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = []byte("tail")
	if err := b.Flush(); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Flush: %v", err)
	}
	if b.pending != nil || b.idle() {
		t.Fatalf("pending %q, idle %v after a failed flush", b.pending, b.idle())
	}
}
