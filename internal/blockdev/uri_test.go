package blockdev_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

func TestRegistryOpenErrors(t *testing.T) {
	file := tempFile(t, "", 1<<20)
	r := blockdev.NewRegistry()
	tests := []struct {
		uri  string
		want error
	}{
		{"", blockdev.ErrInvalidURI},
		{"relative/path", blockdev.ErrInvalidURI},
		{"foo:///x", blockdev.ErrUnknownScheme},
		{"nvmf://host/nqn", blockdev.ErrUnknownScheme}, // registered by another package
		{"malloc:///m", blockdev.ErrInvalidURI},        // missing size_mb
		{"malloc:///?size_mb=4", blockdev.ErrInvalidURI},
		{"malloc:///m?size_mb=4&bogus=1", blockdev.ErrInvalidURI},
		{"malloc:///m?size_mb=abc", blockdev.ErrInvalidURI},
		{"malloc:///m?size_mb=", blockdev.ErrInvalidURI},
		{"malloc:///m?size_mb=4&blk_size=1000", blockdev.ErrInvalidURI},
		{"malloc:///m?size_mb=4&blk_size=4k", blockdev.ErrInvalidURI},
		{"malloc:///m?size_mb=4&blk_size=512&blk_size=4096", blockdev.ErrInvalidURI},
		{"aio://" + file + "?bogus=1", blockdev.ErrInvalidURI},
		{"aio://" + file + "?blk_size=2048", blockdev.ErrInvalidURI},
		{"aio://" + file + "?blk_size=x", blockdev.ErrInvalidURI},
		{"aio://host" + file, blockdev.ErrInvalidURI},
		{"aio:relative", blockdev.ErrInvalidURI},
		{"aio:///", blockdev.ErrInvalidURI},
		{"uring://" + file + "?bogus=1", blockdev.ErrInvalidURI},
		{"aio:///nonexistent/kura/dev", blockdev.ErrNotFound},
		{"/nonexistent/kura/dev", blockdev.ErrNotFound},
		{"uring:///nonexistent/kura/dev", blockdev.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.uri, func(t *testing.T) {
			d, err := r.Open(t.Context(), tc.uri)
			if err == nil {
				d.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open(%q) error %v, want %v", tc.uri, err, tc.want)
			}
		})
	}
}

func TestRegistryOpenOK(t *testing.T) {
	file := tempFile(t, "", 1<<20)
	r := blockdev.NewRegistry()
	tests := []struct {
		uri  string
		size int64
		bs   int
	}{
		{"malloc:///m?size_mb=4", 4 << 20, 512},
		{"MALLOC:///m?size_mb=1&blk_size=4096", 1 << 20, 4096},
		{file, 1 << 20, 512},
		{"aio://" + file, 1 << 20, 512},
		{"aio://" + file + "?blk_size=4096", 1 << 20, 4096},
		{"uring://" + file + "?blk_size=4096", 1 << 20, 4096},
	}
	for _, tc := range tests {
		t.Run(tc.uri, func(t *testing.T) {
			if strings.HasPrefix(tc.uri, "uring") {
				skipNoUring(t)
			}
			d, err := r.Open(t.Context(), tc.uri)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.Size() != tc.size || d.BlockSize() != tc.bs {
				t.Fatalf("geometry %d/%d, want %d/%d", d.Size(), d.BlockSize(), tc.size, tc.bs)
			}
		})
	}
	want := []string{"aio", "malloc", "uring"}
	if got := r.Schemes(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Schemes() = %v, want %v", got, want)
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		in, scheme, path string
		err              bool
	}{
		{"/dev/sda", "aio", "/dev/sda", false},
		{"/tmp/a b?x", "aio", "/tmp/a b?x", false}, // bare paths are taken literally
		{"Uring:///dev/nvme0n1?blk_size=4096", "uring", "/dev/nvme0n1", false},
		{"malloc:///m?size_mb=1", "malloc", "/m", false},
		{"", "", "", true},
		{"dev/sda", "", "", true},
		{"://x", "", "", true},
		{"aio://%zz", "", "", true},
	}
	for _, tc := range tests {
		u, err := blockdev.ParseURI(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseURI(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if err != nil {
			if !errors.Is(err, blockdev.ErrInvalidURI) {
				t.Errorf("ParseURI(%q) error %v does not wrap ErrInvalidURI", tc.in, err)
			}
			continue
		}
		if u.Scheme != tc.scheme || u.Path != tc.path {
			t.Errorf("ParseURI(%q) = %s %q, want %s %q", tc.in, u.Scheme, u.Path, tc.scheme, tc.path)
		}
	}
}
