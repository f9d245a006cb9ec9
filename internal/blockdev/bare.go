package blockdev

import (
	"os"
	"sync"
)

// BareScheme is the scheme a bare path (/dev/..., /var/lib/disk.img) opens
// with: "uring" when this kernel lets the process set up an io_uring,
// otherwise "aio". io_uring is faster here at queue depth (measured in
// docs/nbd.md, "CPU per I/O after tuning": ~2.5x the IOPS of pread at 4k
// QD32 at less CPU per I/O, equal at QD1), but is often disabled by sysctl
// (kernel.io_uring_disabled) or a container's seccomp profile, so it is
// probed, never assumed. KURA_BARE_SCHEME=aio|uring overrides the choice.
func BareScheme() string {
	bareOnce.Do(func() {
		switch s := os.Getenv("KURA_BARE_SCHEME"); s {
		case "aio", "uring":
			bareScheme = s
			return
		}
		bareScheme = "aio"
		if r, err := newRing(2); err == nil {
			r.close()
			bareScheme = "uring"
		}
	})
	return bareScheme
}

var (
	bareOnce   sync.Once
	bareScheme string // set once by BareScheme
)
