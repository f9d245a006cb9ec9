package nvme

import (
	"errors"
	"fmt"
	"strings"
)

// MaxNQNLen is the longest NQN in bytes (NVMe Base 2.0 §4.5).
const MaxNQNLen = 223

// ErrInvalidNQN is returned (wrapped) by ValidateNQN.
var ErrInvalidNQN = errors.New("nvme: invalid NQN")

// ValidateNQN checks the NQN format: "nqn.yyyy-mm.reverse.domain:string"
// or the UUID form "nqn.2014-08.org.nvmexpress:uuid:...", at most 223 bytes
// of printable ASCII/UTF-8 without spaces or NULs.
func ValidateNQN(nqn string) error {
	switch {
	case nqn == "":
		return fmt.Errorf("%w: empty", ErrInvalidNQN)
	case len(nqn) > MaxNQNLen:
		return fmt.Errorf("%w %q: %d bytes, at most %d allowed", ErrInvalidNQN, trunc(nqn), len(nqn), MaxNQNLen)
	case !strings.HasPrefix(nqn, "nqn."):
		return fmt.Errorf("%w %q: must start with \"nqn.\"", ErrInvalidNQN, trunc(nqn))
	}
	for _, r := range nqn {
		if r <= ' ' || r == 0x7F {
			return fmt.Errorf("%w %q: contains a space or control character", ErrInvalidNQN, trunc(nqn))
		}
	}
	if nqn == DiscoveryNQN {
		return nil
	}
	// nqn.yyyy-mm.<domain>[:<string>]
	rest := nqn[4:]
	if len(rest) < 8 || rest[4] != '-' || rest[7] != '.' || !digits(rest[0:4]) || !digits(rest[5:7]) {
		return fmt.Errorf("%w %q: want nqn.yyyy-mm.<reverse-domain>:<name>", ErrInvalidNQN, trunc(nqn))
	}
	if len(rest) == 8 || rest[8] == ':' {
		return fmt.Errorf("%w %q: missing naming authority after the date", ErrInvalidNQN, trunc(nqn))
	}
	return nil
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
