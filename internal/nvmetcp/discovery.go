package nvmetcp

import (
	"net"
	"slices"
	"strconv"

	"github.com/kura-io/kura/internal/nvme"
)

// discoveryLog builds the discovery log page (LID 0x70) for the host of
// discovery controller c: the discovery subsystem itself plus every
// subsystem that host may connect to (nvme-tcp-facts §9.2).
func (t *Target) discoveryLog(c *controller) []byte {
	t.mu.Lock()
	gen := t.genctr
	var nqns []string
	for nqn, s := range t.subs {
		if s.hostAllowed(c.hostNQN) {
			nqns = append(nqns, nqn)
		}
	}
	var addr net.Addr
	if t.ln != nil {
		addr = t.ln.Addr()
	}
	t.mu.Unlock()
	slices.Sort(nqns)
	host, port := "", ""
	if a := t.cfg.DiscoveryAddr; a != "" {
		if h, p, err := net.SplitHostPort(a); err == nil {
			host, port = h, p
		}
	} else if ta, ok := addr.(*net.TCPAddr); ok {
		host, port = ta.IP.String(), strconv.Itoa(ta.Port)
		if ta.IP.IsUnspecified() {
			c.mu.Lock()
			aq := c.adminQ
			c.mu.Unlock()
			if aq != nil {
				if la, ok := aq.conn.LocalAddr().(*net.TCPAddr); ok {
					host = la.IP.String()
				}
			}
		}
	}
	fam := uint8(nvme.AdrFamIPv4)
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		fam = nvme.AdrFamIPv6
	}
	entry := func(nqn string, sub uint8) nvme.DiscoveryEntry {
		return nvme.DiscoveryEntry{TrType: nvme.TrTypeTCP, AdrFam: fam, SubType: sub, Treq: nvme.TreqNotRequired | nvme.TreqSQFlowDisable,
			PortID: t.cfg.PortID, CNTLID: 0xFFFF, ASQSZ: 32, TrSvcID: port, SubNQN: nqn, TrAddr: host}
	}
	entries := []nvme.DiscoveryEntry{entry(nvme.DiscoveryNQN, nvme.SubTypeCurrentDisc)}
	for _, n := range nqns {
		entries = append(entries, entry(n, nvme.SubTypeNVMe))
	}
	return nvme.MarshalDiscoveryLog(gen, entries)
}
