// Package testtool helps tests that drive external programs (fio, qemu,
// nbdkit, tshark, ...) or need root: a missing prerequisite skips the
// test, unless KURA_REQUIRE_TOOLS=1 (set by the CI test script), where it
// fails.
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
			missing(t, "tool %q not installed: run scripts/test.sh, which installs scripts/test-packages.txt", n)
		}
		paths = append(paths, p)
	}
	return paths
}

// missing skips t, or fails it under KURA_REQUIRE_TOOLS=1 (CI), where
// every prerequisite must be present.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("KURA_REQUIRE_TOOLS") == "1" {
		t.Fatalf("KURA_REQUIRE_TOOLS=1: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireFile checks that path exists (a header or library of Debian
// package pkg), skipping or failing t like Require.
func RequireFile(t testing.TB, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		missing(t, "%s not found: install %s (scripts/test-packages.txt)", path, pkg)
	}
}

// RequireRoot skips t unless it runs as root, or fails it under
// KURA_REQUIRE_TOOLS=1 (CI runs as root). why says what needs root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "%s needs root", why)
	}
}

// Long reports whether long-mode tests (soak, many crash cycles) are enabled
// with KURA_LONG=1.
func Long() bool { return os.Getenv("KURA_LONG") == "1" }
