package cli

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// parseSize parses a size such as "10", "10MiB", "1.5GiB", "4096B", "1G",
// "500MB". A number without a unit is in defUnit bytes (1<<20 for replica
// sizes given in MiB, as in the reference client). K/M/G/T and KiB/MiB/...
// are binary; KB/MB/GB/TB are decimal.
func parseSize(s string, defUnit uint64) (uint64, error) {
	in := s
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	if num == "" {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit, e.g. 10, 512MiB, 10GiB", in)
	}
	mult := defUnit
	switch strings.ToLower(unit) {
	case "":
	case "b":
		mult = 1
	case "k", "ki", "kib":
		mult = 1 << 10
	case "m", "mi", "mib":
		mult = 1 << 20
	case "g", "gi", "gib":
		mult = 1 << 30
	case "t", "ti", "tib":
		mult = 1 << 40
	case "p", "pi", "pib":
		mult = 1 << 50
	case "kb":
		mult = 1e3
	case "mb":
		mult = 1e6
	case "gb":
		mult = 1e9
	case "tb":
		mult = 1e12
	default:
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)", in, unit)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %v", in, err)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: too large", in)
	}
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("invalid size %q: not a whole number of bytes", in)
	}
	return uint64(v), nil
}
