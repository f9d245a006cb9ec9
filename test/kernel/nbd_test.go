package kernel_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/guest"
	"github.com/kura-io/kura/internal/nbd"
)

// TestKernelNBDClient: the Linux kernel nbd client (nbd-client in the guest)
// → Kura's NBD server backed by a malloc device: O_DIRECT round trips,
// ext4 mkfs/mount/write/umount/fsck, and data written by the guest is on the
// device as seen from the host.
func TestKernelNBDClient(t *testing.T) {
	t.Parallel()
	guest.EnsureImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	const size = 64 << 20
	dev, err := blockdev.NewMalloc("nbd-kernel", size, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	srv := nbd.NewServer(nbd.Config{ListenAddr: "127.0.0.1:0"})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.AddExport("kura", dev, nbd.ExportOptions{Description: "kernel client test"}); err != nil {
		t.Fatal(err)
	}
	rodev, err := blockdev.NewMalloc("nbd-kernel-ro", 8<<20, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer rodev.Close()
	if err := srv.AddExport("ro", rodev, nbd.ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	port := srv.Addr().(*net.TCPAddr).Port

	// The filesystem covers the first 48 MiB; the guest writes a pattern
	// at 56 MiB that the host then reads back from the device.
	script := rwScript + fmt.Sprintf(`
P=%d
must connect nbd-client $KURA_HOST $P /dev/nbd0 -N kura -b 4096
must size sh -c 'test "$(blockdev --getsize64 /dev/nbd0)" = %d'
check rw_4k rw /dev/nbd0 4096 16 3
check rw_64k rw /dev/nbd0 65536 8 5
check rw_1m rw /dev/nbd0 1048576 4 10
check_fails wrong_export nbd-client $KURA_HOST $P /dev/nbd1 -N no-such-export -b 4096
check discard blkdiscard -o 0 -l 1048576 /dev/nbd0
# Multi-connection: a second device with 2 connections to the same export
# sees what the first one wrote, and the reverse.
must multiconn_connect nbd-client $KURA_HOST $P /dev/nbd1 -N kura -b 4096 -C 2
cross() {
	dd if=/dev/urandom of=/tmp/x bs=64k count=4 2>/dev/null
	dd if=/tmp/x of=$1 bs=64k count=4 seek=300 oflag=direct conv=notrunc 2>/dev/null
	test "$(dd if=$2 bs=64k count=4 skip=300 iflag=direct 2>/dev/null | md5sum)" = "$(md5sum < /tmp/x)"
}
check multiconn_rw rw /dev/nbd1 65536 8 7
check multiconn_cross_a_to_b cross /dev/nbd0 /dev/nbd1
check multiconn_cross_b_to_a cross /dev/nbd1 /dev/nbd0
check multiconn_disconnect nbd-client -d /dev/nbd1
# Read-only export.
must ro_connect nbd-client $KURA_HOST $P /dev/nbd2 -N ro -b 4096
check ro_flag sh -c 'test "$(blockdev --getro /dev/nbd2)" = 1'
check ro_read dd if=/dev/nbd2 of=/dev/null bs=64k count=16 iflag=direct
check_fails ro_write dd if=/dev/zero of=/dev/nbd2 bs=4096 count=1 oflag=direct
check ro_disconnect nbd-client -d /dev/nbd2
fs48() { mkfs.ext4 -F -q /dev/nbd0 48M && e2fsck -fn /dev/nbd0 >/dev/null; }
check mkfs_48m fs48
fsc() {
	mkdir -p /mnt/t
	mount -t ext4 /dev/nbd0 /mnt/t
	for i in 1 2 3; do dd if=/dev/urandom of=/mnt/t/file$i bs=64k count=$((i * 8)) 2>/dev/null; done
	(cd /mnt/t && md5sum file1 file2 file3) > /tmp/sums
	umount /mnt/t
	e2fsck -fn /dev/nbd0
	mount -t ext4 /dev/nbd0 /mnt/t
	(cd /mnt/t && md5sum -c /tmp/sums)
	umount /mnt/t
}
check ext4_cycle fsc
pattern() {
	dd if=/dev/urandom of=/tmp/pat bs=1M count=1 2>/dev/null
	dd if=/tmp/pat of=/dev/nbd0 bs=1M seek=56 count=1 oflag=direct 2>/dev/null
	value pattern_md5 $(md5sum < /tmp/pat | cut -d' ' -f1)
}
check pattern pattern
check disconnect nbd-client -d /dev/nbd0
`, port, size)
	start := time.Now()
	out, err := guest.Run(ctx, t, guest.Options{Script: script, HostPorts: []int{port}, Timeout: 5 * time.Minute})
	t.Logf("guest scenario took %v", time.Since(start))
	guest.ReportChecks(t, out, "connect", "size", "rw_4k", "rw_64k", "rw_1m", "wrong_export", "discard",
		"multiconn_rw", "multiconn_cross_a_to_b", "multiconn_cross_b_to_a", "ro_flag", "ro_read", "ro_write", "ext4_cycle", "pattern", "disconnect")
	if err != nil {
		t.Fatal(err)
	}
	want := guest.Values(out)["pattern_md5"]
	if got := md5At(t, dev, 56<<20, 1<<20); got != want {
		t.Errorf("pattern at 56 MiB: host reads md5 %s, guest wrote %s", got, want)
	}
}
