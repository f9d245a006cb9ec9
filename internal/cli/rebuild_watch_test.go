package cli

import "testing"

func TestProgressBar(t *testing.T) {
	for _, tc := range []struct {
		pct  uint32
		want string
	}{
		{0, "[..........]   0%"},
		{50, "[#####.....]  50%"},
		{99, "[#########.]  99%"},
		{100, "[##########] 100%"},
		{250, "[##########] 100%"},
	} {
		if got := progressBar(tc.pct, 10); got != tc.want {
			t.Errorf("progressBar(%d) = %q, want %q", tc.pct, got, tc.want)
		}
	}
}
