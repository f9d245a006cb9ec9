package nvmetcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
	"github.com/kura-io/kura/internal/nvme"
)

const testHost = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startTarget starts a loopback target on a free port.
func startTarget(t testing.TB, cfg TargetConfig) *Target {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	tg, err := NewTarget(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}

func addMalloc(t testing.TB, tg *Target, name string, size int64, bs int, hosts ...string) (string, blockdev.Device) {
	t.Helper()
	dev, err := blockdev.NewMalloc(name, size, bs)
	if err != nil {
		t.Fatal(err)
	}
	nqn := NQNFor(name)
	cfg := SubsystemConfig{NQN: nqn, Device: dev, AllowedHosts: hosts, AllowAnyHost: len(hosts) == 0,
		UUID: [16]byte{1, 2, 3, byte(len(name))}}
	if err := tg.AddSubsystem(cfg); err != nil {
		t.Fatal(err)
	}
	return nqn, dev
}

func dial(t testing.TB, tg *Target, cfg Config) *Device {
	t.Helper()
	cfg.Addr = tg.Addr().String()
	if cfg.HostNQN == "" {
		cfg.HostNQN = testHost
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConformanceOverLoopback(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	n := 0
	for _, bs := range []int{512, 4096} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			blockdevtest.RunWith(t, blockdevtest.Options{ZeroesUnwritten: true, SupportsUnmapZeroes: true},
				func(t *testing.T) blockdev.Device {
					n++
					nqn, _ := addMalloc(t, tg, fmt.Sprintf("conf%d", n), 16<<20, bs)
					return dial(t, tg, Config{SubNQN: nqn, IOQueues: 2})
				})
		})
	}
}

func TestLargeWritesAndDigests(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "big", 32<<20, 512)
	for _, dg := range []struct{ h, d bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 3, HeaderDigest: dg.h, DataDigest: dg.d})
		for _, n := range []int{512, 4096, 16384, 16896, 131072, 1 << 20, 3<<20 + 512} {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(i*7 + n)
			}
			off := int64(n) % (8 << 20) / 512 * 512
			if _, err := d.WriteAt(p, off); err != nil {
				t.Fatalf("digests %+v write %d: %v", dg, n, err)
			}
			q := make([]byte, n)
			if _, err := d.ReadAt(q, off); err != nil {
				t.Fatalf("read %d: %v", n, err)
			}
			if !bytes.Equal(p, q) {
				t.Fatalf("digests %+v: data mismatch for %d bytes", dg, n)
			}
		}
		d.Close()
	}
}

func TestHostNotAllowed(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "acl", 1<<20, 512, "nqn.2014-08.org.nvmexpress:uuid:allowed")
	ctx := context.Background()
	_, err := Dial(ctx, Config{Addr: tg.Addr().String(), SubNQN: nqn, HostNQN: testHost, Logger: quietLogger()})
	var st nvme.Status
	if !errors.Is(err, ErrHostNotAllowed) || !errors.As(err, &st) || st.Code() != nvme.StatusConnectInvalidHost || !st.DNR() {
		t.Fatalf("want Connect Invalid Host, got %v", err)
	}
	d := dial(t, tg, Config{SubNQN: nqn, HostNQN: "nqn.2014-08.org.nvmexpress:uuid:allowed"})
	d.Close()
	// Empty allow-list without AllowAnyHost refuses everyone.
	dev, _ := blockdev.NewMalloc("x", 1<<20, 512)
	if err := tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("closed"), Device: dev}); err != nil {
		t.Fatal(err)
	}
	_, err = Dial(ctx, Config{Addr: tg.Addr().String(), SubNQN: NQNFor("closed"), HostNQN: testHost, Logger: quietLogger()})
	if !errors.Is(err, ErrHostNotAllowed) {
		t.Fatalf("empty allow-list: %v", err)
	}
}

func TestSQFlowControlModes(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "sqflow", 4<<20, 512)
	for _, on := range []bool{false, true} {
		d := dial(t, tg, Config{SubNQN: nqn, SQFlowControl: on})
		p := bytes.Repeat([]byte{0x5A}, 8192)
		if _, err := d.WriteAt(p, 4096); err != nil {
			t.Fatal(err)
		}
		q := make([]byte, 8192)
		if _, err := d.ReadAt(q, 4096); err != nil || !bytes.Equal(p, q) {
			t.Fatalf("sq flow control %v: %v", on, err)
		}
		// An error on a read still needs the response capsule.
		if _, err := d.ReadAt(q, d.Size()); !errors.Is(err, blockdev.ErrOutOfRange) {
			t.Fatalf("out of range read: %v", err)
		}
		d.Close()
	}
}

// TestQueueBufferLimit: with a tiny per-queue buffer budget, concurrent
// large reads and R2T writes wait for buffers instead of allocating, and
// all complete with the right data.
func TestQueueBufferLimit(t *testing.T) {
	tg := startTarget(t, TargetConfig{QueueBufferLimit: 256 << 10})
	nqn, _ := addMalloc(t, tg, "budget", 16<<20, 4096)
	d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 1})
	defer d.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Go(func() {
			p := bytes.Repeat([]byte{byte(w + 1)}, 192<<10)
			q := make([]byte, len(p))
			off := int64(w) * int64(len(p))
			for i := 0; i < 10; i++ {
				if _, err := d.WriteAt(p, off); err != nil {
					errs <- err
					return
				}
				if _, err := d.ReadAt(q, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(p, q) {
					errs <- fmt.Errorf("worker %d: data mismatch", w)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
