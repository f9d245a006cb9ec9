package nvmetcp

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/kura-io/kura/internal/nvme"
)

// Discover connects to the discovery controller at addr (host:port) as
// hostNQN ("" = DefaultHostNQN) and returns the discovery log entries, as
// `nvme discover` does (nvme-tcp-facts §17).
func Discover(ctx context.Context, addr, hostNQN string) ([]nvme.DiscoveryEntry, error) {
	cfg := Config{Addr: addr, SubNQN: nvme.DiscoveryNQN, HostNQN: hostNQN, KATO: -1}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	q, err := dialQueue(ctx, &cfg, 0, 32)
	if err != nil {
		return nil, err
	}
	defer q.close()
	if _, err := fabricsConnect(q, &cfg, 0, 31, 0, 0xFFFF, false); err != nil {
		return nil, err
	}
	if err := enableController(q); err != nil {
		return nil, err
	}
	var entries []nvme.DiscoveryEntry
	for attempt := 0; attempt < 5; attempt++ {
		hdr := make([]byte, nvme.DiscLogHeaderSize)
		if err := getLog(q, nvme.LogDiscovery, hdr, true); err != nil {
			return nil, err
		}
		gen, n := binary.LittleEndian.Uint64(hdr), binary.LittleEndian.Uint64(hdr[8:])
		if n > 1024 {
			return nil, fmt.Errorf("nvmetcp: discovery log claims %d records", n)
		}
		page := make([]byte, nvme.DiscLogHeaderSize+int(n)*nvme.DiscLogEntrySize)
		if err := getLog(q, nvme.LogDiscovery, page, false); err != nil {
			return nil, err
		}
		var gen2 uint64
		gen2, entries = nvme.ParseDiscoveryLog(page)
		if gen2 == gen {
			break
		}
	}
	cc := uint64(6<<nvme.CCIOSQESShift | 4<<nvme.CCIOCQESShift | nvme.CCEnable | 1<<nvme.CCSHNShift)
	property(q, true, nvme.PropCC, false, cc)
	return entries, nil
}

func getLog(q *hqueue, lid uint8, buf []byte, rae bool) error {
	var sqe nvme.SQE
	sqe.Opcode = nvme.AdminGetLogPage
	sqe.SetLogPage(lid, 0, rae, uint32(len(buf)), 0)
	return adminCmd(q, &sqe, buf)
}
