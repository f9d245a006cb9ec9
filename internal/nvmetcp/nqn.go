package nvmetcp

import (
	"errors"
	"fmt"

	"github.com/kura-io/kura/internal/nvme"
)

// KuraNQNPrefix is the prefix of every NQN Kura exports.
const KuraNQNPrefix = "nqn.2019-05.io.kura:"

// NQNFor returns the subsystem NQN Kura uses for an export name.
func NQNFor(name string) string { return KuraNQNPrefix + name }

// Errors returned by the target and initiator (wrapped).
var (
	ErrInvalidNQN     = nvme.ErrInvalidNQN
	ErrExists         = errors.New("nvmetcp: subsystem already exists")
	ErrNotFound       = errors.New("nvmetcp: subsystem not found")
	ErrClosed         = errors.New("nvmetcp: closed")
	ErrInvalidConfig  = errors.New("nvmetcp: invalid configuration")
	ErrNotStarted     = errors.New("nvmetcp: target not started")
	ErrConnect        = errors.New("nvmetcp: connect failed")
	ErrHostNotAllowed = errors.New("nvmetcp: host not allowed")
)

// ValidateNQN checks an NQN (length ≤ 223, "nqn." prefix, date and naming
// authority, no spaces).
func ValidateNQN(nqn string) error { return nvme.ValidateNQN(nqn) }

func validateSubsysNQN(nqn string) error {
	if err := nvme.ValidateNQN(nqn); err != nil {
		return err
	}
	if nqn == nvme.DiscoveryNQN {
		return fmt.Errorf("%w %q: reserved for the discovery controller", ErrInvalidNQN, nqn)
	}
	return nil
}
