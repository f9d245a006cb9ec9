package blockdev

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestBarePathScheme: a bare path opens with BareScheme's device (uring
// where io_uring works here, aio otherwise), while explicit schemes win.
func TestBarePathScheme(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewRegistry()
	for _, tc := range []struct{ uri, scheme string }{
		{p, BareScheme()},
		{"aio://" + p, "aio"},
		{"uring://" + p, "uring"},
	} {
		if tc.scheme == "uring" && BareScheme() != "uring" {
			continue // io_uring disabled on this machine
		}
		d, err := r.Open(context.Background(), tc.uri)
		if err != nil {
			t.Fatalf("%s: %v", tc.uri, err)
		}
		_, isUring := d.(*Uring)
		if isUring != (tc.scheme == "uring") {
			t.Errorf("%s opened a %T, want scheme %s", tc.uri, d, tc.scheme)
		}
		d.Close()
	}
	t.Logf("bare paths open as %s", BareScheme())
}
