package blockdev_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/blockdev/blockdevtest"
)

const testDevSize = blockdevtest.MinSize

// tempFile creates a sparse file of size bytes in dir (t.TempDir when "").
func tempFile(t testing.TB, dir string, size int64) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	f, err := os.CreateTemp(dir, "dev-*.img")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Cleanup(func() { os.Remove(f.Name()) })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// directDir returns a temporary directory whose filesystem supports
// O_DIRECT: the default temp dir unless it is tmpfs (or otherwise lacks
// O_DIRECT), else one under /var/tmp. It skips when neither works.
func directDir(t testing.TB) string {
	t.Helper()
	for _, parent := range []string{"", "/var/tmp"} {
		dir, err := os.MkdirTemp(parent, "kura-blockdev-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		f, err := blockdev.OpenFile(tempFile(t, dir, 1<<20), blockdev.FileOptions{})
		if err != nil {
			continue
		}
		direct := f.Direct()
		f.Close()
		if direct {
			return dir
		}
		t.Logf("%s has no O_DIRECT (tmpfs?)", dir)
	}
	t.Skip("no temp directory with O_DIRECT support")
	return ""
}

// shmDir returns a temporary directory on /dev/shm (tmpfs), or skips.
func shmDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "kura-blockdev-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

var fileOpts = blockdevtest.Options{ZeroesUnwritten: true, SupportsUnmapZeroes: true}

func TestConformanceMalloc(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		t.Run(blkName(bs), func(t *testing.T) {
			blockdevtest.RunWith(t, fileOpts, func(t *testing.T) blockdev.Device {
				d, err := blockdev.NewMalloc("m", testDevSize, bs)
				if err != nil {
					t.Fatal(err)
				}
				return d
			})
		})
	}
}

func blkName(bs int) string {
	if bs == 512 {
		return "bs512"
	}
	return "bs4096"
}

// opener opens a device on a fresh temp file.
type opener func(path string, opts blockdev.FileOptions) (blockdev.Device, error)

func openFileDev(path string, opts blockdev.FileOptions) (blockdev.Device, error) {
	return blockdev.OpenFile(path, opts)
}

func openUringDev(path string, opts blockdev.FileOptions) (blockdev.Device, error) {
	return blockdev.OpenUring(path, opts)
}

// runFileConformance runs the suite on temp files: O_DIRECT on the default
// temp dir, buffered, and on tmpfs, at both block sizes.
func runFileConformance(t *testing.T, open opener, wantDirect func(blockdev.Device) bool) {
	cases := []struct {
		name     string
		dir      func(t testing.TB) string
		buffered bool
		direct   bool
	}{
		{"direct", directDir, false, true},
		{"buffered", func(t testing.TB) string { return "" }, true, false},
		{"tmpfs", shmDir, false, false},
	}
	for _, c := range cases {
		for _, bs := range []int{512, 4096} {
			t.Run(c.name+"/"+blkName(bs), func(t *testing.T) {
				dir := c.dir(t)
				blockdevtest.RunWith(t, fileOpts, func(t *testing.T) blockdev.Device {
					d, err := open(tempFile(t, dir, testDevSize), blockdev.FileOptions{BlockSize: bs, Buffered: c.buffered})
					if err != nil {
						t.Fatal(err)
					}
					if c.direct && !wantDirect(d) {
						t.Fatalf("%s: no O_DIRECT in a directory that supports it", d)
					}
					return d
				})
			})
		}
	}
}

func TestConformanceFile(t *testing.T) {
	runFileConformance(t, openFileDev, func(d blockdev.Device) bool { return d.(*blockdev.File).Direct() })
}

func TestConformanceUring(t *testing.T) {
	skipNoUring(t)
	runFileConformance(t, openUringDev, func(d blockdev.Device) bool { return d.(*blockdev.Uring).Direct() })
}

// skipNoUring skips when io_uring is unavailable (kernel or sysctl).
func skipNoUring(t testing.TB) {
	t.Helper()
	path := tempFile(t, "", 1<<20)
	d, err := blockdev.OpenUring(path, blockdev.FileOptions{})
	if err != nil {
		t.Skipf("io_uring unavailable (kernel, sysctl kernel.io_uring_disabled or seccomp): %v", err)
	}
	d.Close()
}

func TestConformanceRegistryURIs(t *testing.T) {
	r := blockdev.NewRegistry()
	for _, scheme := range []string{"aio", "uring", "bare"} {
		t.Run(scheme, func(t *testing.T) {
			if scheme == "uring" {
				skipNoUring(t)
			}
			blockdevtest.RunWith(t, fileOpts, func(t *testing.T) blockdev.Device {
				p := tempFile(t, "", testDevSize)
				uri := scheme + "://" + p + "?blk_size=4096"
				if scheme == "bare" {
					uri = p
				}
				d, err := r.Open(t.Context(), uri)
				if err != nil {
					t.Fatal(err)
				}
				return d
			})
		})
	}
}

func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := blockdev.OpenFile(filepath.Join(dir, "missing"), blockdev.FileOptions{}); !isErr(err, blockdev.ErrNotFound) {
		t.Errorf("missing file: %v, want ErrNotFound", err)
	}
	if _, err := blockdev.OpenFile(dir, blockdev.FileOptions{}); !isErr(err, blockdev.ErrInvalidURI) {
		t.Errorf("directory: %v, want ErrInvalidURI", err)
	}
	small := tempFile(t, dir, 100)
	if _, err := blockdev.OpenFile(small, blockdev.FileOptions{}); !isErr(err, blockdev.ErrInvalidURI) {
		t.Errorf("file smaller than a block: %v, want ErrInvalidURI", err)
	}
	if _, err := blockdev.OpenFile(small, blockdev.FileOptions{BlockSize: 1024}); !isErr(err, blockdev.ErrInvalidURI) {
		t.Errorf("block size 1024: %v, want ErrInvalidURI", err)
	}
	// Size rounds down to the block size.
	odd := tempFile(t, dir, 3*4096+700)
	d, err := blockdev.OpenFile(odd, blockdev.FileOptions{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Size() != 3*4096 || d.BlockSize() != 4096 {
		t.Errorf("geometry %d/%d, want %d/4096", d.Size(), d.BlockSize(), 3*4096)
	}
}
