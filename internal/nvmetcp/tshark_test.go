package nvmetcp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/testtool"
)

// TestTsharkDecodesTraffic captures Kura initiator→target traffic on
// loopback and checks that Wireshark's NVMe/TCP dissector finds no
// malformed PDU (a cheap independent check of our wire format).
func TestTsharkDecodesTraffic(t *testing.T) {
	tshark := testtool.Require(t, "tshark")[0]
	testtool.RequireRoot(t, "capturing on lo")
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "shark", 8<<20, 512)
	port := tg.Addr().(*net.TCPAddr).Port
	pcap := filepath.Join(t.TempDir(), "cap.pcapng")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tshark, "-i", "lo", "-f", fmt.Sprintf("tcp port %d", port), "-w", pcap)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Capturing on") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("tshark did not start capturing")
	}
	// "Capturing on" is printed slightly before dumpcap's filter is live.
	time.Sleep(time.Second)

	for _, dg := range []bool{false, true} {
		d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 2, HeaderDigest: dg, DataDigest: dg})
		for _, n := range []int{512, 4096, 65536} {
			p := make([]byte, n)
			if _, err := d.WriteAt(p, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := d.ReadAt(p, 0); err != nil {
				t.Fatal(err)
			}
		}
		must(t, d.Flush())
		must(t, d.Unmap(0, 4096))
		must(t, d.WriteZeroes(0, 4096))
		d.Close()
	}
	if _, err := Discover(ctx, tg.Addr().String(), testHost); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()

	decode := func(args ...string) string {
		out, err := exec.CommandContext(ctx, tshark, append([]string{"-r", pcap, "-d", fmt.Sprintf("tcp.port==%d,nvme-tcp", port)}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tshark decode: %v\n%s", err, out)
		}
		return string(out)
	}
	all := decode("-V")
	if strings.Contains(all, "Malformed") {
		i := strings.Index(all, "Malformed")
		t.Fatalf("tshark reports a malformed packet:\n%s", all[max(0, i-3000):min(len(all), i+500)])
	}
	summary := decode()
	for _, want := range []string{"NVMe/TCP", "Initialize Connection Request", "Connect", "Read", "Write"} {
		if !strings.Contains(all, want) && !strings.Contains(summary, want) {
			t.Errorf("decode lacks %q", want)
		}
	}
	t.Logf("%d packets decoded", strings.Count(summary, "\n"))
	if testing.Verbose() && (t.Failed() || os.Getenv("KURA_TSHARK_DUMP") == "1") {
		t.Log(summary[:min(len(summary), 3000)])
	}
}
