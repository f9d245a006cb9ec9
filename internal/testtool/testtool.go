// Package testtool helps tests that drive external programs (fio, qemu,
// nbdkit, tshark, ...): a missing tool skips the test, unless
// KURA_REQUIRE_TOOLS=1 (set by the CI test script), where it fails.
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// Require returns the path of each named program, skipping or failing t
// when one is missing.
func Require(t testing.TB, names ...string) []string {
	t.Helper()
	paths := make([]string, 0, len(names))
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			if os.Getenv("KURA_REQUIRE_TOOLS") == "1" {
				t.Fatalf("required tool %q not found (KURA_REQUIRE_TOOLS=1): install it via scripts/test-packages.txt", n)
			}
			t.Skipf("tool %q not installed; run scripts/test.sh to install test dependencies", n)
		}
		paths = append(paths, p)
	}
	return paths
}

// Long reports whether long-mode tests (soak, many crash cycles) are enabled
// with KURA_LONG=1.
func Long() bool { return os.Getenv("KURA_LONG") == "1" }
