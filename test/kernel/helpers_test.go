// Package kernel_test runs the Linux kernel's own storage clients and
// targets, inside a QEMU TCG guest (internal/guest), against Kura:
//
//   - the kernel NVMe/TCP initiator (nvme-cli) → Kura's NVMe/TCP target,
//   - Kura's NVMe/TCP initiator → the kernel nvmet-tcp target,
//   - the kernel nbd client (nbd-client) → Kura's NBD server.
//
// Each scenario batches many checks into one guest boot; every check prints a
// "KURA-CHECK: PASS|FAIL name" line and shows up here as a subtest.
// See docs/testing-kernel.md.
package kernel_test

import (
	"crypto/md5"
	"encoding/hex"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

// rwScript defines the guest shell function `rw DEV BS COUNT [SEEK]`: write
// COUNT random blocks of BS bytes with O_DIRECT at block SEEK, read them back
// with O_DIRECT and compare the md5 sums.
const rwScript = `
rw() {
	_seek=${4:-0}
	dd if=/dev/urandom of=/tmp/rw.data bs=$2 count=$3 2>/dev/null
	dd if=/tmp/rw.data of=$1 bs=$2 count=$3 seek=$_seek oflag=direct conv=notrunc,fsync 2>&1 | tail -1
	dd if=$1 of=/tmp/rw.back bs=$2 count=$3 skip=$_seek iflag=direct 2>/dev/null
	a=$(md5sum < /tmp/rw.data | cut -d' ' -f1)
	b=$(md5sum < /tmp/rw.back | cut -d' ' -f1)
	echo "wrote $a read $b"
	test "$a" = "$b"
}
# fs_cycle DEV: mkfs.ext4, mount, write files, umount, fsck clean, remount, verify.
fs_cycle() {
	mkfs.ext4 -F -q $1
	mkdir -p /mnt/t
	mount -t ext4 $1 /mnt/t
	for i in 1 2 3; do dd if=/dev/urandom of=/mnt/t/file$i bs=64k count=$((i * 8)) 2>/dev/null; done
	mkdir /mnt/t/dir && echo hello > /mnt/t/dir/small
	(cd /mnt/t && md5sum file1 file2 file3 dir/small) > /tmp/sums
	umount /mnt/t
	e2fsck -fn $1
	mount -t ext4 $1 /mnt/t
	(cd /mnt/t && md5sum -c /tmp/sums)
	umount /mnt/t
}
`

// md5At returns the hex md5 of length bytes of dev at off.
func md5At(t *testing.T, dev blockdev.Device, off int64, length int) string {
	t.Helper()
	buf := make([]byte, length)
	if _, err := dev.ReadAt(buf, off); err != nil {
		t.Fatalf("read device at %d: %v", off, err)
	}
	sum := md5.Sum(buf)
	return hex.EncodeToString(sum[:])
}
