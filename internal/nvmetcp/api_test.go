package nvmetcp

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

func TestTargetAPIErrors(t *testing.T) {
	if _, err := NewTarget(TargetConfig{CntlIDMin: 10, CntlIDMax: 5}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad cntlid range: %v", err)
	}
	tg := startTarget(t, TargetConfig{})
	dev, _ := blockdev.NewMalloc("a", 1<<20, 512)
	for _, nqn := range []string{"", "kura:x", "nqn.2019-05.io.kura:" + strings.Repeat("x", 220), nvme.DiscoveryNQN, "nqn.2019-05.io.kura:a b"} {
		if err := tg.AddSubsystem(SubsystemConfig{NQN: nqn, Device: dev, AllowAnyHost: true}); !errors.Is(err, ErrInvalidNQN) {
			t.Errorf("NQN %q: %v", nqn, err)
		}
	}
	if err := tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("a"), AllowAnyHost: true}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("no device: %v", err)
	}
	if err := tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("a"), Device: dev, AllowedHosts: []string{"bogus"}}); !errors.Is(err, ErrInvalidNQN) {
		t.Errorf("bad allowed host: %v", err)
	}
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("a"), Device: dev, AllowAnyHost: true}))
	if err := tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("a"), Device: dev, AllowAnyHost: true}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	if err := tg.RemoveSubsystem(NQNFor("zzz")); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove unknown: %v", err)
	}
	info := tg.Subsystems()
	if len(info) != 1 || info[0].NQN != NQNFor("a") || info[0].Size != 1<<20 || info[0].ANAState != nvme.ANAOptimized {
		t.Fatalf("info %+v", info)
	}
	if NQNFor("vol") != "nqn.2019-05.io.kura:vol" || ValidateNQN(NQNFor("vol")) != nil {
		t.Fatal("NQNFor")
	}
}

// TestRemoveSubsystemUnderIO: removing a subsystem disconnects its hosts
// and waits for in-flight device calls, so the device can be closed right
// after; the initiator sees errors, never a hang.
func TestRemoveSubsystemUnderIO(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, dev := addMalloc(t, tg, "rm", 8<<20, 512)
	d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 2, ReconnectTimeout: 300 * time.Millisecond})
	defer d.Close()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			p := make([]byte, 4096)
			for {
				select {
				case <-stop:
					return
				default:
				}
				d.WriteAt(p, int64(w)*4096)
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	must(t, tg.RemoveSubsystem(nqn))
	must(t, dev.Close())
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if _, err := d.ReadAt(make([]byte, 512), 0); err == nil {
		t.Fatal("read from removed subsystem succeeded")
	}
	if len(tg.Subsystems()) != 0 {
		t.Fatal("subsystem still listed")
	}
}

type panicDev struct{ blockdev.Device }

func (panicDev) ReadAt(p []byte, off int64) (int, error) { panic("device bug") }

func TestDevicePanicIsContained(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	m, _ := blockdev.NewMalloc("p", 1<<20, 512)
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("panic"), Device: panicDev{m}, AllowAnyHost: true}))
	d := dial(t, tg, Config{SubNQN: NQNFor("panic")})
	defer d.Close()
	_, err := d.ReadAt(make([]byte, 512), 0)
	var st nvme.Status
	if !errors.As(err, &st) || st.Code() != nvme.StatusInternal {
		t.Fatalf("read from panicking device: %v", err)
	}
	if _, err := d.WriteAt(make([]byte, 512), 0); err != nil {
		t.Fatalf("write after contained panic: %v", err)
	}
}
