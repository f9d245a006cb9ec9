package nbd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/testtool"
)

// Tests against real NBD clients (qemu-img, qemu-io, nbdinfo, nbdcopy,
// fio). Each needs its tool (Debian packages in scripts/test-packages.txt)
// and skips without it unless KURA_REQUIRE_TOOLS=1.

// realServer starts a server with a malloc export and returns its URI.
func realServer(t *testing.T, name string, size int64, opts ExportOptions) (*Server, string) {
	return realServerOn(t, "malloc", name, size, opts)
}

// backends are the device kinds the real-client tests run against.
var backends = []string{"malloc", "aio", "uring"}

// realServerOn starts a server exporting a device of the given kind:
// malloc, aio (O_DIRECT file) or uring (io_uring file).
func realServerOn(t *testing.T, kind, name string, size int64, opts ExportOptions) (*Server, string) {
	t.Helper()
	s := NewServer(Config{ListenAddr: "127.0.0.1:0", Logger: quietLogger()})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var dev blockdev.Device
	var err error
	switch kind {
	case "malloc":
		dev, err = blockdev.NewMalloc(name, size, 512)
	default:
		p := filepath.Join(t.TempDir(), name+".img")
		if err = os.WriteFile(p, nil, 0o644); err == nil {
			err = os.Truncate(p, size)
		}
		if err == nil && kind == "aio" {
			dev, err = blockdev.OpenFile(p, blockdev.FileOptions{})
		} else if err == nil {
			dev, err = blockdev.OpenUring(p, blockdev.FileOptions{})
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	if err := s.AddExport(name, dev, opts); err != nil {
		t.Fatal(err)
	}
	return s, uriOf(s, name)
}

func uriOf(s *Server, name string) string {
	a := s.Addr().(*net.TCPAddr)
	return URI("127.0.0.1", a.Port, name)
}

// run runs a command with a timeout and fails the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LIBNBD_DEBUG=0")
	cmd.Dir = t.TempDir() // tools (fio verify state) may drop files in their cwd
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func randomFile(t *testing.T, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), "src.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

func TestRealQemuImg(t *testing.T) {
	testtool.Require(t, "qemu-img")
	_, uri := realServer(t, "conv", 8<<20, ExportOptions{})
	out := run(t, "qemu-img", "info", "-f", "raw", uri)
	if !strings.Contains(out, "virtual size: 8 MiB (8388608 bytes)") {
		t.Fatalf("qemu-img info:\n%s", out)
	}
	src, data := randomFile(t, 8<<20)
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, uri)
	dst := filepath.Join(t.TempDir(), "dst.img")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, dst)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if sha(got) != sha(data) {
		t.Fatal("qemu-img convert round trip: sha256 differs")
	}
}

func TestRealQemuIo(t *testing.T) {
	testtool.Require(t, "qemu-io")
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) { testQemuIo(t, kind) })
	}
}

func testQemuIo(t *testing.T, kind string) {
	_, uri := realServerOn(t, kind, "io", 16<<20, ExportOptions{})
	out := run(t, "qemu-io", "-f", "raw",
		"-c", "write -P 0xab 0 1M",
		"-c", "read -P 0xab 0 1M",
		"-c", "write -f -P 0xcd 1M 64k", // FUA
		"-c", "flush",
		"-c", "read -P 0xcd 1M 64k",
		"-c", "write -z 0 512k", // WRITE_ZEROES
		"-c", "read -P 0 0 512k",
		"-c", "read -P 0xab 512k 512k",
		"-c", "discard 4M 1M", // TRIM
		"-c", "aio_write -P 0x11 8M 4k",
		"-c", "aio_write -P 0x22 9M 4k",
		"-c", "aio_flush",
		"-c", "read -P 0x11 8M 4k",
		"-c", "read -P 0x22 9M 4k",
		uri)
	if strings.Contains(out, "fail") || strings.Contains(out, "error") || strings.Count(out, "ops/sec") != 12 {
		t.Fatalf("qemu-io:\n%s", out)
	}
	// Reads past the end and misaligned requests are refused by qemu
	// itself; a read-only export must refuse writes.
	_, roURI := realServer(t, "ro", 1<<20, ExportOptions{ReadOnly: true})
	cmd := exec.Command("qemu-io", "-f", "raw", "-r", "-c", "read 0 4k", roURI)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("read-only read: %v\n%s", err, out)
	}
}

func TestRealNbdinfo(t *testing.T) {
	testtool.Require(t, "nbdinfo")
	s, uri := realServer(t, "disk0", 64<<20, ExportOptions{Description: "kura test disk"})
	dev, _ := blockdev.NewMalloc("x", 1<<20, 4096)
	if err := s.AddExport("disk1", dev, ExportOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddExport("secret", dev, ExportOptions{AllowedClients: []string{"192.0.2.0/24"}}); err != nil {
		t.Fatal(err)
	}
	out := run(t, "nbdinfo", uri)
	for _, want := range []string{"export-size: 67108864", "description: kura test disk",
		"can_multi_conn: true", "can_flush: true", "can_fua: true", "can_trim: true", "can_zero: true",
		"is_read_only: false", "block_size_minimum: 512", "block_size_preferred: 4096", "block_size_maximum: 33554432"} {
		if !strings.Contains(out, want) {
			t.Errorf("nbdinfo output lacks %q:\n%s", want, out)
		}
	}
	out = run(t, "nbdinfo", uriOf(s, "disk1"))
	if !strings.Contains(out, "is_read_only: true") || !strings.Contains(out, "block_size_minimum: 4096") {
		t.Errorf("nbdinfo read-only export:\n%s", out)
	}
	a := s.Addr().(*net.TCPAddr)
	out = run(t, "nbdinfo", "--list", "nbd://127.0.0.1:"+strconv.Itoa(a.Port))
	if !strings.Contains(out, "disk0") || !strings.Contains(out, "disk1") || strings.Contains(out, "secret") {
		t.Errorf("nbdinfo --list:\n%s", out)
	}
	if out, err := exec.Command("nbdinfo", uriOf(s, "secret")).CombinedOutput(); err == nil {
		t.Errorf("nbdinfo opened a hidden export:\n%s", out)
	}
}

func TestRealNbdcopy(t *testing.T) {
	testtool.Require(t, "nbdcopy")
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) { testNbdcopy(t, kind) })
	}
}

func testNbdcopy(t *testing.T, kind string) {
	s, uri := realServerOn(t, kind, "src", 32<<20, ExportOptions{})
	dev, _ := blockdev.NewMalloc("dst", 32<<20, 512)
	if err := s.AddExport("dst", dev, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	src, data := randomFile(t, 32<<20)
	copy(data[4<<20:8<<20], make([]byte, 4<<20)) // a zero range exercises WRITE_ZEROES
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "nbdcopy", "--flush", src, uri)
	run(t, "nbdcopy", "--flush", uri, uriOf(s, "dst")) // nbd → nbd, multi-conn both sides
	out := filepath.Join(t.TempDir(), "out.img")
	run(t, "nbdcopy", uriOf(s, "dst"), out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if sha(got) != sha(data) {
		t.Fatal("nbdcopy round trip: sha256 differs")
	}
	if !bytes.Equal(got[4<<20:8<<20], make([]byte, 4<<20)) {
		t.Fatal("zero range not zero")
	}
}

func TestRealFioVerify(t *testing.T) {
	testtool.Require(t, "fio")
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) { testFioVerify(t, kind) })
	}
}

func testFioVerify(t *testing.T, kind string) {
	_, uri := realServerOn(t, kind, "fio", 64<<20, ExportOptions{})
	out := run(t, "fio", "--name=verify", "--ioengine=nbd", "--uri="+uri,
		"--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=16m", "--numjobs=2", "--offset_increment=16m",
		"--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0", "--do_verify=1", "--group_reporting")
	if strings.Contains(out, "verify:") && strings.Contains(out, "bad") || !strings.Contains(out, "err= 0") || !strings.Contains(out, "read: IOPS") {
		t.Fatalf("fio:\n%s", out)
	}
}

// TestRealBlockStatus: nbdinfo --map and qemu-img map read base:allocation.
func TestRealBlockStatus(t *testing.T) {
	testtool.Require(t, "nbdinfo", "qemu-img")
	s := NewServer(Config{ListenAddr: "127.0.0.1:0", Logger: quietLogger()})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dev, _ := blockdev.NewMalloc("map", 8<<20, 512)
	if _, err := dev.WriteAt(bytes.Repeat([]byte{1}, 4096), 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := s.AddExport("map", dev, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	uri := uriOf(s, "map")
	out := run(t, "nbdinfo", "--map", uri)
	fields := strings.Fields(out)
	want := strings.Fields(`0 2097152 3 hole,zero 2097152 1048576 0 data 3145728 5242880 3 hole,zero`)
	if strings.Join(fields, " ") != strings.Join(want, " ") {
		t.Fatalf("nbdinfo --map:\n%s", out)
	}
	out = run(t, "qemu-img", "map", "-f", "raw", "--output=json", uri)
	if !strings.Contains(out, `"start": 2097152, "length": 1048576, "depth": 0, "present": true, "zero": false, "data": true`) {
		t.Fatalf("qemu-img map:\n%s", out)
	}
}

// TestRealQemuIo4K: qemu honours a 4096-byte minimum block size with
// read-modify-write for sub-block requests.
func TestRealQemuIo4K(t *testing.T) {
	testtool.Require(t, "qemu-io")
	s := NewServer(Config{ListenAddr: "127.0.0.1:0", Logger: quietLogger()})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dev, _ := blockdev.NewMalloc("d4k", 4<<20, 4096)
	if err := s.AddExport("d4k", dev, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	out := run(t, "qemu-io", "-f", "raw",
		"-c", "write -P 0x33 0 8k",
		"-c", "write -P 0x55 512 512",
		"-c", "read -P 0x33 0 512",
		"-c", "read -P 0x55 512 512",
		"-c", "read -P 0x33 1024 7k",
		uriOf(s, "d4k"))
	if strings.Contains(out, "fail") || strings.Contains(out, "error") || strings.Count(out, "ops/sec") != 5 {
		t.Fatalf("qemu-io:\n%s", out)
	}
	b := make([]byte, 4096)
	if _, err := dev.ReadAt(b, 0); err != nil || b[511] != 0x33 || b[512] != 0x55 || b[1023] != 0x55 || b[1024] != 0x33 {
		t.Fatalf("device contents after RMW: %v % x", err, b[510:1026])
	}
}
