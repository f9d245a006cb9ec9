package kernel_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
	"github.com/kura-io/kura/internal/guest"
	"github.com/kura-io/kura/internal/nvmetcp"
)

// TestKuraInitiatorToKernelNvmet: Kura's NVMe/TCP initiator (on the host)
// against the Linux kernel nvmet-tcp target (in a background guest, brd
// ramdisk namespace, guest port 4420 forwarded to a host port). It runs the
// blockdev conformance suite over the initiator, with and without
// header/data digests, checks discovery and the nvmf:// URI, and has the
// guest verify, on the ramdisk itself, data the initiator wrote.
func TestKuraInitiatorToKernelNvmet(t *testing.T) {
	t.Parallel()
	guest.EnsureImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	const nqn = "nqn.2026-11.io.kura:kernel-nvmet"
	const sizeMiB = 64
	kuraHost := "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000beef"
	script := guest.NvmetTarget{NQN: nqn, SizeMiB: sizeMiB, Hosts: []string{kuraHost}}.Script() + `
echo READY
# Wait until the host writes the marker block at LBA 0, then report the md5
# of MiB 32 as the kernel target's ramdisk holds it.
while ! dd if=/dev/ram0 bs=4096 count=1 iflag=direct 2>/dev/null | grep -q KURA-DONE; do sleep 0.3; done
value kernel_md5 $(dd if=/dev/ram0 bs=1M skip=32 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
echo PATTERN-CHECKED
# Then wait for the marker at 4 KiB and bounce the port: unlinking the
# subsystem from the port drops every association; re-link after 3 s.
while ! dd if=/dev/ram0 bs=4096 skip=1 count=1 iflag=direct 2>/dev/null | grep -q KURA-BOUNCE; do sleep 0.3; done
rm /sys/kernel/config/nvmet/ports/1/subsystems/$NVMET_NQN
echo PORT-DOWN
sleep 3
ln -s /sys/kernel/config/nvmet/subsystems/$NVMET_NQN /sys/kernel/config/nvmet/ports/1/subsystems/$NVMET_NQN
echo PORT-UP
sleep 600
`
	g, err := guest.Start(ctx, t, guest.Options{Script: script, HostFwd: []guest.Fwd{{GuestPort: 4420}},
		Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.WaitFor(ctx, "READY"); err != nil {
		t.Fatal(err)
	}
	addr := g.HostAddr(4420)
	cfg := nvmetcp.Config{Addr: addr, SubNQN: nqn, HostNQN: kuraHost, IOQueues: 2}

	dial := func(t *testing.T, c nvmetcp.Config) *nvmetcp.Device {
		t.Helper()
		dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
		defer dcancel()
		d, err := nvmetcp.Dial(dctx, c)
		if err != nil {
			t.Fatalf("dial kernel nvmet at %s: %v", c.Addr, err)
		}
		return d
	}

	t.Run("discovery", func(t *testing.T) {
		dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
		defer dcancel()
		ents, err := nvmetcp.Discover(dctx, addr, kuraHost)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range ents {
			t.Logf("entry: subtype %d subnqn %s traddr %s trsvcid %s", e.SubType, e.SubNQN, e.TrAddr, e.TrSvcID)
			found = found || e.SubNQN == nqn
		}
		if !found {
			t.Errorf("discovery log of the kernel target has no %s", nqn)
		}
	})
	t.Run("refused_host", func(t *testing.T) {
		c := cfg
		c.HostNQN = badNQN
		dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
		defer dcancel()
		if d, err := nvmetcp.Dial(dctx, c); err == nil {
			d.Close()
			t.Fatal("kernel nvmet accepted a host that is not on its allow-list")
		} else {
			t.Logf("refused as expected: %v", err)
		}
	})
	t.Run("uri", func(t *testing.T) {
		reg := blockdev.NewRegistry()
		nvmetcp.RegisterScheme(reg)
		uri := fmt.Sprintf("nvmf://%s/%s?hostnqn=%s&nr_io_queues=1", addr, nqn, kuraHost)
		d, err := reg.Open(ctx, uri)
		if err != nil {
			t.Fatalf("open %s: %v", uri, err)
		}
		defer d.Close()
		if d.Size() != sizeMiB<<20 {
			t.Errorf("size %d, want %d", d.Size(), sizeMiB<<20)
		}
	})
	for _, v := range []struct {
		name   string
		digest bool
	}{{"conformance", false}, {"conformance_digests", true}} {
		t.Run(v.name, func(t *testing.T) {
			c := cfg
			c.HeaderDigest, c.DataDigest = v.digest, v.digest
			start := time.Now()
			blockdevtest.Run(t, func(t *testing.T) blockdev.Device { return dial(t, c) })
			t.Logf("suite took %v", time.Since(start))
		})
	}
	t.Run("kernel_sees_written_data", func(t *testing.T) {
		d := dial(t, cfg)
		defer d.Close()
		pat := make([]byte, 1<<20)
		r := rand.NewChaCha8([32]byte{7})
		_, _ = r.Read(pat)
		if _, err := d.WriteAt(pat, 32<<20); err != nil {
			t.Fatal(err)
		}
		marker := make([]byte, 4096)
		copy(marker, "KURA-DONE")
		if _, err := d.WriteAt(marker, 0); err != nil {
			t.Fatal(err)
		}
		if err := d.Flush(); err != nil {
			t.Fatal(err)
		}
		back := make([]byte, len(pat))
		if _, err := d.ReadAt(back, 32<<20); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, pat) {
			t.Fatal("read back differs from written pattern")
		}
		if err := g.WaitFor(ctx, "PATTERN-CHECKED"); err != nil {
			t.Fatal(err)
		}
		sum := md5.Sum(pat)
		if got, want := guest.Values(g.Output())["kernel_md5"], hex.EncodeToString(sum[:]); got != want {
			t.Errorf("kernel ramdisk holds md5 %s at 32 MiB, initiator wrote %s", got, want)
		}
	})
	t.Run("reconnect_after_port_bounce", func(t *testing.T) {
		c := cfg
		c.ReconnectTimeout = 60 * time.Second
		d := dial(t, c)
		defer d.Close()
		pat := make([]byte, 256<<10)
		r := rand.NewChaCha8([32]byte{9})
		_, _ = r.Read(pat)
		if _, err := d.WriteAt(pat, 40<<20); err != nil {
			t.Fatal(err)
		}
		marker := make([]byte, 4096)
		copy(marker, "KURA-BOUNCE")
		if _, err := d.WriteAt(marker, 4096); err != nil {
			t.Fatal(err)
		}
		if err := g.WaitFor(ctx, "PORT-DOWN"); err != nil {
			t.Fatal(err)
		}
		if err := g.WaitFor(ctx, "PORT-UP"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		back := make([]byte, len(pat))
		if _, err := d.ReadAt(back, 40<<20); err != nil {
			t.Fatalf("read after the port came back: %v", err)
		}
		t.Logf("first read after the port came back took %v", time.Since(start))
		if !bytes.Equal(back, pat) {
			t.Fatal("data written before the bounce differs after reconnect")
		}
		_, _ = r.Read(pat)
		if _, err := d.WriteAt(pat, 41<<20); err != nil {
			t.Fatalf("write after reconnect: %v", err)
		}
		if _, err := d.ReadAt(back, 41<<20); err != nil || !bytes.Equal(back, pat) {
			t.Fatalf("read after reconnect: err %v, equal %v", err, bytes.Equal(back, pat))
		}
	})
	if _, err := g.Stop(); err != nil {
		t.Error(err)
	}
}
