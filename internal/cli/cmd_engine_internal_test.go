package cli

import (
	"slices"
	"testing"
)

// TestRingProcs: GOMAXPROCS follows max(base, open ring threads + 1),
// and is set only when that changes.
func TestRingProcs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		base  int
		opens []int
		sets  []int
	}{
		{"one ring thread keeps the default", 2, []int{0, 1, 0}, nil},
		{"two raise to three and back", 2, []int{0, 1, 2, 1, 0}, []int{3, 2}},
		{"climb and fall", 2, []int{0, 1, 2, 3, 4, 3, 2, 1, 0}, []int{3, 4, 5, 4, 3, 2}},
		{"a larger base covers them", 8, []int{0, 1, 2, 3, 7, 2, 0}, []int{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sets []int
			hook := ringProcs(tc.base, func(n int) int { sets = append(sets, n); return 0 })
			for _, n := range tc.opens {
				hook(n)
			}
			if len(sets) != len(tc.sets) || !slices.Equal(sets, tc.sets) {
				t.Fatalf("set %v, want %v", sets, tc.sets)
			}
		})
	}
}
