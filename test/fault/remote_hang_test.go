package fault_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/testtool"
)

// TestRemoteDiskHangs: a remote namespace whose disk stops answering while
// its engine stays up, so its NVMe/TCP connection and keep-alives stay
// healthy. Engine B's pool is a file on a loop-mounted ext4 that the test
// freezes (fsfreeze: writes block until it thaws); engine A opens B's replica as a bdev over nvmf:// with
// io_timeout_ms=1500 and exports it over NBD. A write during the hang must
// fail (EIO) after about the I/O timeout instead of hanging, and once the
// disk is back the same export serves reads and writes again through the
// reconnected association, with the data written before the hang intact.
func TestRemoteDiskHangs(t *testing.T) {
	testtool.RequireRoot(t, "mounting a loop file system")
	testtool.Require(t, "fsfreeze", "mkfs.ext4", "mount", "umount")
	const ioTimeout = 1500 * time.Millisecond
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	sparseFile(t, img, 96<<20)
	sh(t, "mkfs.ext4", "-q", "-F", img)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, "mount", "-o", "loop", img, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() }) // after the engines are gone
	poolFile := filepath.Join(mnt, "pool.img")
	sparseFile(t, poolFile, 64<<20)

	a := newEngine(t, "A", filepath.Join(dir, "a"))
	b := newEngine(t, "B", filepath.Join(dir, "b"))
	// Registered after the engines, so it runs before they are killed: a
	// process with writes held by a frozen file system cannot exit.
	t.Cleanup(func() { exec.Command("fsfreeze", "-u", mnt).Run() })

	b.kura(t, "pool", "create", "pb", poolFile, "--cluster-size", "1MiB")
	b.kura(t, "replica", "create", "pb", "rB", "--size=16")
	remote := findURI(t, b.kura(t, "replica", "share", "pb", "rB", "--allow-any-host"), "nvmf://")
	sep := "?"
	if strings.Contains(remote, "?") {
		sep = "&"
	}
	name := strings.TrimSpace(a.kura(t, "bdev", "create", remote+sep+fmt.Sprintf("io_timeout_ms=%d", ioTimeout.Milliseconds())))
	export := findURI(t, a.kura(t, "bdev", "share", name, "--protocol", "nbd"), "nbd://")
	export = export[strings.LastIndex(export, "/")+1:]

	c, err := dialNBD(a.nbd, export, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := bytes.Repeat([]byte{0xa5}, blockSize)
	if err := c.WriteAt(before, 0); err != nil {
		t.Fatalf("write before the hang: %v", err)
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("flush before the hang: %v", err)
	}

	sh(t, "fsfreeze", "-f", mnt)
	start := time.Now()
	err = c.WriteAt(bytes.Repeat([]byte{0x5a}, blockSize), 8*blockSize)
	took := time.Since(start)
	t.Logf("write during the hang: %v after %v", err, took.Round(time.Millisecond))
	if err == nil {
		t.Fatal("a write to a hung remote disk succeeded")
	}
	if took < ioTimeout || took > ioTimeout+5*time.Second {
		t.Fatalf("write during the hang failed after %v, want about the I/O timeout %v", took, ioTimeout)
	}
	sh(t, "fsfreeze", "-u", mnt)

	// The association comes back; the data from before the hang is there
	// and the export works again.
	deadline := time.Now().Add(30 * time.Second)
	got := make([]byte, blockSize)
	for {
		err := c.ReadAt(got, 0)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read after the disk came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !bytes.Equal(got, before) {
		t.Fatal("the block written before the hang reads back changed")
	}
	after := bytes.Repeat([]byte{0x3c}, blockSize)
	if err := c.WriteAt(after, 8*blockSize); err != nil {
		t.Fatalf("write after the disk came back: %v", err)
	}
	if err := c.ReadAt(got, 8*blockSize); err != nil || !bytes.Equal(got, after) {
		t.Fatalf("read back after the disk came back: %v", err)
	}
}

// sh runs a command and returns its output, failing the test on error.
func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
