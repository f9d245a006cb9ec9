package blockdev_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
	"github.com/kura-io/kura/internal/testtool"
)

// loopDevice attaches a 32 MiB temp file to a loop device, or skips.
func loopDevice(t *testing.T) string {
	t.Helper()
	testtool.Require(t, "losetup")
	file := tempFile(t, "", 32<<20)
	out, err := exec.Command("losetup", "--find", "--show", file).CombinedOutput()
	if err != nil {
		t.Skipf("losetup failed (needs root and loop devices): %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

func TestLoopDevice(t *testing.T) {
	dev := loopDevice(t)
	opens := map[string]func(string, blockdev.FileOptions) (blockdev.Device, error){
		"aio": openFileDev, "uring": openUringDev,
	}
	for name, open := range opens {
		t.Run(name, func(t *testing.T) {
			if name == "uring" {
				skipNoUring(t)
			}
			d, err := open(dev, blockdev.FileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if d.Size() != 32<<20 || d.BlockSize() != 512 {
				t.Errorf("geometry %d/%d, want %d/512 (BLKGETSIZE64/BLKSSZGET)", d.Size(), d.BlockSize(), 32<<20)
			}
			if _, err := open(dev, blockdev.FileOptions{}); !errors.Is(err, blockdev.ErrBusy) {
				t.Errorf("second open of %s: %v, want ErrBusy", dev, err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			for _, bs := range []int{512, 4096} {
				t.Run(blkName(bs), func(t *testing.T) {
					blockdevtest.Run(t, func(t *testing.T) blockdev.Device {
						d, err := open(dev, blockdev.FileOptions{BlockSize: bs})
						if err != nil {
							t.Fatal(err)
						}
						return d
					})
				})
			}
		})
	}
}
