package kernel_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/guest"
	"github.com/kura-io/kura/internal/nvme"
	"github.com/kura-io/kura/internal/nvmetcp"
)

// TestReferenceNvmetScript runs the kernel-initiator script against the
// guest's own kernel nvmet-tcp target. It proves the script (not Kura):
// when it passes and TestKernelInitiatorToKuraTarget fails, the difference
// is Kura's.
func TestReferenceNvmetScript(t *testing.T) {
	t.Parallel()
	const nqn = "nqn.2026-11.io.kura:reference"
	const size = 64 << 20
	script := guest.NvmetTarget{NQN: nqn, SizeMiB: size >> 20, Hosts: []string{hostNQN}}.Script() +
		nvmeScript(nvmeScriptParams{Addr: "127.0.0.1", Port: 4420, NQN: nqn, Size: size, BadHost: true})
	out, err := guest.Run(context.Background(), t, guest.Options{Script: script, Timeout: 5 * time.Minute})
	guest.ReportChecks(t, out, append(nvmeChecks, "bad_host_refused")...)
	if err != nil {
		t.Fatal(err)
	}
}

// ctrlWatcher polls the target's controller list while a guest runs.
type ctrlWatcher struct {
	mu       sync.Mutex
	maxIOQs  map[string]int // NQN → most I/O queues seen on one controller of hostNQN
	current  map[string]int // NQN → controllers now
	stop     chan struct{}
	done     chan struct{}
	hostSeen map[string]bool
}

func watchControllers(tgt func() *nvmetcp.Target) *ctrlWatcher {
	w := &ctrlWatcher{maxIOQs: map[string]int{}, current: map[string]int{}, hostSeen: map[string]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			subs := tgt().Subsystems()
			w.mu.Lock()
			for _, s := range subs {
				w.current[s.NQN] = len(s.Controllers)
				for _, c := range s.Controllers {
					w.hostSeen[c.HostNQN] = true
					if c.HostNQN == hostNQN && c.IOQueues > w.maxIOQs[s.NQN] {
						w.maxIOQs[s.NQN] = c.IOQueues
					}
				}
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return w
}

func (w *ctrlWatcher) Stop() { close(w.stop); <-w.done }

func (w *ctrlWatcher) controllers(nqn string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current[nqn]
}

// TestKernelInitiatorToKuraTarget: the Linux kernel NVMe/TCP initiator (in
// the guest) against Kura's target: discovery, allow-list, 2 I/O queues,
// O_DIRECT round trips (in-capsule and R2T), fio verify, flush, write
// zeroes, ext4, reservations with two hosts, disconnect; then a second
// subsystem on a file device (io_uring: the asynchronous path), and keep-alive expiry when the guest goes
// silent.
func TestKernelInitiatorToKuraTarget(t *testing.T) {
	t.Parallel()
	guest.EnsureImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	const (
		mallocNQN  = "nqn.2026-11.io.kura:kernel-malloc"
		fileNQN    = "nqn.2026-11.io.kura:kernel-file"
		mallocSize = 64 << 20
		fileSize   = 32 << 20
	)
	mdev, err := blockdev.NewMalloc("kernel-malloc", mallocSize, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer mdev.Close()
	path := filepath.Join(t.TempDir(), "file.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fileSize); err != nil {
		t.Fatal(err)
	}
	// io_uring where the kernel allows it: the target then runs reads and
	// writes through its asynchronous path (blockdev.Async).
	var fdev blockdev.Device
	fdev, err = blockdev.OpenUring(path, blockdev.FileOptions{BlockSize: 4096})
	_, ringable := fdev.(blockdev.QueueOpener)
	if err != nil {
		t.Logf("io_uring unavailable (%v): file subsystem on pread/pwrite", err)
		fdev, err = blockdev.OpenFile(path, blockdev.FileOptions{BlockSize: 4096})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer fdev.Close()

	stateDir := t.TempDir()
	// startTarget starts a Kura target exporting both devices on addr.
	var targets []*nvmetcp.Target // every target started, for their counters
	startTarget := func(addr string) *nvmetcp.Target {
		tgt, err := nvmetcp.NewTarget(nvmetcp.TargetConfig{ListenAddr: addr, StateDir: stateDir})
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, tgt)
		if err := tgt.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tgt.AddSubsystem(nvmetcp.SubsystemConfig{NQN: mallocNQN, Device: mdev, AllowedHosts: []string{hostNQN, hostNQN2}}); err != nil {
			t.Fatal(err)
		}
		if err := tgt.AddSubsystem(nvmetcp.SubsystemConfig{NQN: fileNQN, Device: fdev, AllowedHosts: []string{hostNQN}}); err != nil {
			t.Fatal(err)
		}
		return tgt
	}
	var cur atomic.Pointer[nvmetcp.Target]
	cur.Store(startTarget("127.0.0.1:0"))
	defer func() { cur.Load().Close() }()
	port := cur.Load().Addr().(*net.TCPAddr).Port
	w := watchControllers(cur.Load)
	defer w.Stop()

	script := nvmeScript(nvmeScriptParams{Addr: "$KURA_HOST", Port: port, NQN: mallocNQN, Size: mallocSize,
		BadHost: true, Reservations: true}) + fmt.Sprintf(`
F=%s
# Header and data digests on.
# Reconnect delay 1 s, controller loss timeout 60 s.
must connect_file nvme connect -t tcp -a $A -s $P -n $F --hostnqn=$HN --hostid=$HID -i 2 -g -G -c 1 -l 60
must file_dev wait_for 20 nsdev $F
FD=$(nsdev $F)
FC=$(ctrlfor $F $HN)
check file_lbs_4k sh -c "test \$(cat /sys/block/${FD##*/}/queue/logical_block_size) = 4096"
check file_rw_64k rw $FD 65536 8 1
check file_rw_1m rw $FD 1048576 2 3
fio64() {
	fio --name=qd64 --filename=$FD --rw=randwrite --bs=64k --size=8M --offset=16M --ioengine=libaio \
		--iodepth=64 --direct=1 --verify=md5 > /tmp/fio64.out 2>&1 || { cat /tmp/fio64.out; return 1; }
	grep -E "err=|IOPS" /tmp/fio64.out
}
check file_fio_qd64_64k_verify fio64
check file_discard blkdiscard -o 1048576 -l 1048576 $FD
check file_write_zeroes wz $FD 600
# Target restart: the host closes Kura's target and starts a new one on the
# same port; the kernel must recover (error recovery, reconnect) and the
# data must still be there.
dd if=/dev/urandom of=/tmp/before bs=1M count=1 2>/dev/null
check restart_write dd if=/tmp/before of=$FD bs=1M seek=8 count=1 oflag=direct conv=notrunc
echo RESTART-TARGET
check restart_seen_by_kernel wait_for 30 kura_not grep -q live /sys/class/nvme/${FC##*/}/state
check reconnected_live wait_for 60 grep -q live /sys/class/nvme/${FC##*/}/state
check restart_data_intact sh -c "test \"\$(dd if=$FD bs=1M skip=8 count=1 iflag=direct 2>/dev/null | md5sum)\" = \"\$(md5sum < /tmp/before)\""
check restart_rw rw $FD 65536 8 40
# ANA: the host makes the subsystem's ANA group inaccessible; the kernel
# learns it (AEN + ANA log), queues new I/O instead of failing it, and
# completes it once the group is optimized again.
anais() { cat /sys/class/nvme/${FC##*/}/nvme*c*n*/ana_state | tee /dev/stderr | grep -qx "$1"; }
check ana_initial_optimized anais optimized
echo ANA-INACCESSIBLE
check ana_inaccessible_seen wait_for 30 anais inaccessible
dd if=/dev/urandom of=/tmp/ana bs=64k count=1 2>/dev/null
(dd if=/tmp/ana of=$FD bs=64k seek=100 count=1 oflag=direct conv=notrunc 2>/dev/null; echo $? > /tmp/ana.rc) &
sleep 2
check ana_io_queued test ! -f /tmp/ana.rc
echo ANA-OPTIMIZED
check ana_optimized_seen wait_for 30 anais optimized
check ana_io_completed wait_for 30 test -f /tmp/ana.rc
check ana_io_succeeded sh -c 'cat /tmp/ana.rc; test "$(cat /tmp/ana.rc)" = 0'
check ana_data sh -c "test \"\$(dd if=$FD bs=64k skip=100 count=1 iflag=direct 2>/dev/null | md5sum)\" = \"\$(md5sum < /tmp/ana)\""
check file_ext4 fs_cycle $FD
check file_disconnect sh -c "nvme disconnect -n $F | grep -q disconnected"
check file_dev_gone wait_for 10 kura_not nsdev $F
# Keep-alive: connect with a 2 s keep-alive timeout, then go silent (the
# link goes down, the TCP connections stay open on the host side): the
# target must reap the controller by itself. The short KATO is used only
# here, so a slow TCG guest cannot trip it during the I/O checks.
must ka_connect nvme connect -t tcp -a $A -s $P -n $F --hostnqn=$HN --hostid=$HID -i 1 -k 2
must ka_dev wait_for 20 nsdev $F
echo KA-LINK-DOWN
ip link set eth0 down
sleep 25
`, fileNQN)
	start := time.Now()
	g, err := guest.Start(ctx, t, guest.Options{Script: script, HostPorts: []int{port}, Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.WaitFor(ctx, "RESTART-TARGET"); err == nil {
		cur.Load().Close()
		cur.Store(startTarget(fmt.Sprintf("127.0.0.1:%d", port)))
		t.Logf("target restarted on port %d", port)
	}
	if err := g.WaitFor(ctx, "ANA-INACCESSIBLE"); err == nil {
		if err := cur.Load().SetANAState(fileNQN, nvme.ANAInaccessible); err != nil {
			t.Error(err)
		}
	}
	if err := g.WaitFor(ctx, "ANA-OPTIMIZED"); err == nil {
		if err := cur.Load().SetANAState(fileNQN, nvme.ANAOptimized); err != nil {
			t.Error(err)
		}
	}
	kaErr := g.WaitFor(ctx, "KA-LINK-DOWN")
	var reaped time.Duration
	if kaErr == nil {
		down := time.Now()
		for w.controllers(fileNQN) > 0 && time.Since(down) < 20*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		reaped = time.Since(down)
	}
	out, _ := g.Stop()
	t.Logf("guest scenario took %v", time.Since(start))
	guest.ReportChecks(t, out, append(nvmeChecks, "bad_host_refused", "connect_second_host",
		"resv_register_a", "resv_acquire_a_write_exclusive", "resv_we_blocks_other_write", "resv_preempt_b",
		"resv_notice_a_preempted", "resv_notice_a_taken", "resv_notice_b_none", "resv_notice_mask",
		"resv_report_empty", "connect_file", "file_rw_1m", "file_fio_qd64_64k_verify", "file_discard", "file_write_zeroes", "restart_seen_by_kernel", "reconnected_live", "restart_data_intact", "restart_rw",
		"ana_inaccessible_seen", "ana_io_queued", "ana_optimized_seen", "ana_io_succeeded", "ana_data",
		"file_ext4", "file_disconnect", "ka_connect")...)
	if kaErr != nil {
		t.Fatalf("guest never reached the keep-alive step: %v", kaErr)
	}

	t.Run("host_side_io_queues", func(t *testing.T) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if got := w.maxIOQs[mallocNQN]; got != 2 {
			t.Errorf("target saw %d I/O queues on the kernel's controller, want 2", got)
		}
		if w.hostSeen[badNQN] {
			t.Errorf("a controller for the refused host %s existed", badNQN)
		}
	})
	t.Run("no_controllers_left", func(t *testing.T) {
		if n := w.controllers(mallocNQN); n != 0 {
			t.Errorf("%d controller(s) of %s left after the guest disconnected", n, mallocNQN)
		}
	})
	t.Run("keep_alive_reaps_silent_host", func(t *testing.T) {
		if n := w.controllers(fileNQN); n != 0 {
			t.Fatalf("%d controller(s) of %s still alive %v after the guest went silent (KATO 2 s)", n, fileNQN, reaped)
		}
		t.Logf("controller reaped %v after the guest's link went down (KATO 2 s)", reaped)
	})
	t.Run("ring_mode_used", func(t *testing.T) {
		// fio at queue depth 64 pipelines on the io_uring file: its I/O
		// queue enters ring mode (per-thread queue, nvmetcp/ring.go).
		var enters int64
		for _, tg := range targets {
			enters += tg.Stats().RingEnters
		}
		t.Logf("I/O queues entered ring mode %d times", enters)
		if ringable && enters == 0 {
			t.Error("no I/O queue entered ring mode on the io_uring file subsystem")
		}
	})
	t.Run("pattern_on_device", func(t *testing.T) {
		want := guest.Values(out)["pattern_md5"]
		if got := md5At(t, mdev, mallocSize-2<<20, 1<<20); got != want {
			t.Errorf("host reads md5 %s at size-2MiB, guest wrote %s", got, want)
		}
	})
}
