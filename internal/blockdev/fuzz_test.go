package blockdev_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kura-io/kura/internal/blockdev"
)

// FuzzParseURI checks that URI parsing and parameter validation never
// panic, and that successes are well-formed.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"/dev/sda", "aio:///dev/sda?blk_size=4096", "uring:///x?blk_size=512",
		"malloc:///m?size_mb=64&blk_size=512", "nvmf://10.0.0.1:8420/nqn.2019-05.io.kura:x?hostnqn=h",
		"", "aio:", "AIO://host/p?%zz", "malloc:///m?size_mb=-1&size_mb=2", "x://[::1]:9/p#f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := blockdev.ParseURI(s)
		if err != nil {
			if !errors.Is(err, blockdev.ErrInvalidURI) {
				t.Fatalf("ParseURI(%q): error %v does not wrap ErrInvalidURI", s, err)
			}
			return
		}
		if u.Scheme == "" || u.Scheme != strings.ToLower(u.Scheme) {
			t.Fatalf("ParseURI(%q): scheme %q", s, u.Scheme)
		}
		p := blockdev.NewParams(u)
		bs := p.BlockSize(512)
		n := p.Int("size_mb", 1, 1, 1<<22)
		p.String("hostnqn", "")
		if err := p.Done(); err == nil {
			if bs != 512 && bs != 4096 {
				t.Fatalf("%q: accepted blk_size %d", s, bs)
			}
			if n < 1 || n > 1<<22 {
				t.Fatalf("%q: accepted size_mb %d", s, n)
			}
		} else if !errors.Is(err, blockdev.ErrInvalidURI) {
			t.Fatalf("%q: Done error %v does not wrap ErrInvalidURI", s, err)
		}
	})
}
