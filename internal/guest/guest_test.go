package guest_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/guest"
)

func TestNewcArchiveAppendedToInitrd(t *testing.T) {
	// Pure Go: the per-test cpio is covered by the boots below; here only
	// the check-line parser.
	out := "x\n  | detail one\nKURA-CHECK: FAIL a (rc=1)\nKURA-CHECK: PASS b (0.1s)\n"
	cs := guest.Checks(out)
	if len(cs) != 2 || cs[0].Name != "a" || cs[0].Passed || !strings.Contains(cs[0].Detail, "detail one") ||
		cs[1].Name != "b" || !cs[1].Passed {
		t.Fatalf("Checks = %+v", cs)
	}
}

// TestSmoke boots the guest, checks the kernel and loads the NVMe/TCP
// modules, and checks that the guest reaches a host port through guestfwd
// (and nothing else).
func TestSmoke(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A host echo server the guest may reach.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "host-echo:%s", line)
			}()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	start := time.Now()
	out, err := guest.Run(ctx, t, guest.Options{
		Script: `
check uname sh -c 'uname -r | grep -q cloud-amd64 && uname -r'
check nvme_tcp_loaded sh -c 'modprobe nvme-tcp && grep -q "^nvme_tcp " /proc/modules && test -c /dev/nvme-fabrics'
check nvme_cli nvme version
check fio fio --version
check mkfs_ext4 sh -c 'mkfs.ext4 -V 2>&1 | head -1'
check nbd_client sh -c 'nbd-client --version 2>&1 | head -1'
check ip_up sh -c 'ip addr show eth0 | grep -q 10.0.2.15'
check host_port sh -c 'echo hi | timeout 10 nc $KURA_HOST ` + fmt.Sprint(port) + ` | grep -q host-echo:hi'
check_fails no_other_host sh -c 'echo hi | timeout 5 nc 10.0.2.2 ` + fmt.Sprint(port) + ` | grep -q host-echo'
check env sh -c 'test "$KURA_SMOKE" = "a b"'
check extra_file sh -c 'test "$(cat /etc/kura-extra)" = extra'
`,
		Env:        map[string]string{"KURA_SMOKE": "a b"},
		ExtraFiles: map[string][]byte{"/etc/kura-extra": []byte("extra")},
		HostPorts:  []int{port},
	})
	t.Logf("boot+script took %v", time.Since(start))
	guest.ReportChecks(t, out, "uname", "nvme_tcp_loaded", "host_port", "no_other_host", "env", "extra_file")
	if err != nil {
		t.Fatal(err)
	}
}

// TestFailureIsReported checks that a failing script is reported as such.
func TestFailureIsReported(t *testing.T) {
	t.Parallel()
	out, err := guest.Run(context.Background(), t, guest.Options{Script: "echo about-to-fail\nfalse\necho not-reached\n"})
	if err == nil {
		t.Fatalf("want failure, got PASS:\n%s", out)
	}
	if !strings.Contains(out, "about-to-fail") || strings.Contains(out, "not-reached") {
		t.Fatalf("unexpected output:\n%s", out)
	}
}

// TestNvmetSelfLoop configures the guest's own kernel nvmet-tcp target on a
// brd ramdisk and connects the guest's kernel initiator to it over
// 127.0.0.1: it proves the modules, configfs and nvme-cli work in the guest.
func TestNvmetSelfLoop(t *testing.T) {
	t.Parallel()
	const nqn = "nqn.2026-11.io.kura:selftest"
	tgt := guest.NvmetTarget{NQN: nqn, SizeMiB: 32}
	script := tgt.Script() + `
check discover sh -c 'nvme discover -t tcp -a 127.0.0.1 -s 4420 | grep -q "subnqn: *` + nqn + `"'
must connect nvme connect -t tcp -a 127.0.0.1 -s 4420 -n ` + nqn + ` -i 2
must dev_appears wait_for 20 test -b /dev/nvme0n1
check io_queues sh -c 'dmesg | grep -E "creating [0-9]+ I/O queues"'
rw() {
	dd if=/dev/urandom of=/tmp/data bs=$1 count=$2 2>/dev/null
	dd if=/tmp/data of=/dev/nvme0n1 bs=$1 count=$2 oflag=direct 2>/dev/null
	dd if=/dev/nvme0n1 of=/tmp/back bs=$1 count=$2 iflag=direct 2>/dev/null
	test "$(md5sum < /tmp/data)" = "$(md5sum < /tmp/back)"
}
check rw_4k rw 4096 4
check rw_1m rw 1048576 2
check disconnect sh -c 'nvme disconnect -n ` + nqn + ` | grep -q "disconnected 1"'
`
	out, err := guest.Run(context.Background(), t, guest.Options{Script: script})
	guest.ReportChecks(t, out, "discover", "connect", "rw_4k", "rw_1m", "disconnect")
	if err != nil {
		t.Fatal(err)
	}
}

// TestBackgroundHostFwd runs a guest in the background that serves a TCP
// port, and talks to it from the host through HostFwd.
func TestBackgroundHostFwd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := guest.Start(ctx, t, guest.Options{
		Script:  "echo READY\nwhile true; do echo from-guest | nc -l -p 7000 >/dev/null; done\n",
		HostFwd: []guest.Fwd{{GuestPort: 7000}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.WaitFor(ctx, "READY"); err != nil {
		t.Fatal(err)
	}
	var got string
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", g.HostAddr(7000), 2*time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			got, _ = bufio.NewReader(c).ReadString('\n')
			c.Close()
			if got != "" {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got != "from-guest\n" {
		t.Fatalf("got %q from guest", got)
	}
	if _, err := g.Stop(); err != nil {
		t.Fatal(err)
	}
}
