package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nbd"
	"github.com/kura-io/kura/internal/nvme"
	"github.com/kura-io/kura/internal/nvmetcp"
)

// Share protocols as stored in the state file.
const (
	protoNVMf = "nvmf"
	protoNBD  = "nbd"
)

// shareEntry is a live (or, after a failed re-create, failed) export.
type shareEntry struct {
	rec        shareRecord
	uri        string
	exportName string
	err        error // set when re-creating the share at start failed
}

func shareKey(kind, name string) string { return kind + ":" + name }

func protoName(p enginev1.ShareProtocol) string {
	if p == enginev1.ShareProtocol_SHARE_PROTOCOL_NBD {
		return protoNBD
	}
	return protoNVMf
}

func protoEnum(s string) enginev1.ShareProtocol {
	if s == protoNBD {
		return enginev1.ShareProtocol_SHARE_PROTOCOL_NBD
	}
	return enginev1.ShareProtocol_SHARE_PROTOCOL_NVMF
}

// checkShareOptions validates the protocol and allow-list: host NQNs for
// NVMe/TCP, client IPs or CIDR prefixes for NBD.
func checkShareOptions(o *enginev1.ShareOptions) error {
	switch o.GetProtocol() {
	case enginev1.ShareProtocol_SHARE_PROTOCOL_NONE, enginev1.ShareProtocol_SHARE_PROTOCOL_NVMF:
		for _, h := range o.GetAllowedHosts() {
			if err := nvme.ValidateNQN(h); err != nil {
				return fmt.Errorf("%w: allowed host: %w", ErrInvalidArgument, err)
			}
		}
	case enginev1.ShareProtocol_SHARE_PROTOCOL_NBD:
		for _, h := range o.GetAllowedHosts() {
			if _, err := netip.ParsePrefix(h); err == nil {
				continue
			}
			if _, err := netip.ParseAddr(h); err != nil {
				return fmt.Errorf("%w: allowed host %q: NBD allow-lists take client IP addresses or CIDR prefixes", ErrInvalidArgument, h)
			}
		}
	default:
		return fmt.Errorf("%w: unknown share protocol %v", ErrInvalidArgument, o.GetProtocol())
	}
	if o.GetAllowAnyHost() && len(o.GetAllowedHosts()) > 0 {
		return fmt.Errorf("%w: give either allowed hosts or allow-any-host, not both", ErrInvalidArgument)
	}
	// An NVMe/TCP share is reachable by any host only when the user asks for
	// it: an empty allow-list is a mistake, not an open door.
	if o.GetProtocol() != enginev1.ShareProtocol_SHARE_PROTOCOL_NBD && len(o.GetAllowedHosts()) == 0 && !o.GetAllowAnyHost() {
		return fmt.Errorf("%w: an NVMe/TCP share needs at least one allowed host NQN (--allowed-host NQN), or allow-any-host (--allow-any-host) to let every host connect", ErrInvalidArgument)
	}
	return nil
}

// shareRecordFor builds the persisted form of a share request. With no
// allowed hosts any host may connect.
func shareRecordFor(kind, poolName, name string, o *enginev1.ShareOptions) shareRecord {
	hosts := slices.Clone(o.GetAllowedHosts())
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	return shareRecord{
		Kind: kind, Pool: poolName, Name: name,
		Protocol:     protoName(o.GetProtocol()),
		AllowedHosts: hosts,
		AllowAnyHost: o.GetAllowAnyHost() || len(hosts) == 0, // NBD: no list = any client (loopback by default)
	}
}

func sameShare(a, b shareRecord) bool {
	return a.Kind == b.Kind && a.Pool == b.Pool && a.Name == b.Name && a.Protocol == b.Protocol &&
		a.AllowAnyHost == b.AllowAnyHost && slices.Equal(a.AllowedHosts, b.AllowedHosts)
}

// shareLocked creates the export described by rec, replacing an existing
// export of the same object with different settings. Callers hold opMu and
// save the state.
func (e *Engine) shareLocked(ctx context.Context, rec shareRecord) (string, error) {
	key := shareKey(rec.Kind, rec.Name)
	e.mu.RLock()
	old, ok := e.mu.shares[key]
	e.mu.RUnlock()
	if ok && old.err == nil {
		if sameShare(old.rec, rec) {
			return old.uri, nil
		}
		if err := e.unshareLocked(ctx, rec.Kind, rec.Name); err != nil {
			return "", err
		}
	}
	dev, exportName, err := e.shareTarget(rec)
	if err != nil {
		return "", err
	}
	var uri string
	switch rec.Protocol {
	case protoNBD:
		uri, err = e.front.addNBD(exportName, dev, rec)
	case protoNVMf:
		uri, err = e.front.addNVMf(exportName, dev, rec)
	default:
		err = fmt.Errorf("%w: unknown share protocol %q", ErrInvalidArgument, rec.Protocol)
	}
	if err != nil {
		return "", fmt.Errorf("share %s %q: %w", rec.Kind, exportName, err)
	}
	e.mu.Lock()
	e.mu.shares[key] = &shareEntry{rec: rec, uri: uri, exportName: exportName}
	e.mu.Unlock()
	e.log.Info("shared", "kind", rec.Kind, "name", exportName, "uri", uri)
	return uri, nil
}

// shareTarget resolves the device a share exports and its export name.
func (e *Engine) shareTarget(rec shareRecord) (blockdev.Device, string, error) {
	switch rec.Kind {
	case "replica":
		_, r, err := e.findReplica(rec.Pool, rec.Name)
		if err != nil {
			return nil, "", err
		}
		return r, r.Info().Name, nil
	case "bdev":
		e.mu.RLock()
		b, ok := e.mu.bdevs[rec.Name]
		e.mu.RUnlock()
		if !ok {
			return nil, "", fmt.Errorf("bdev %q %w", rec.Name, ErrNotFound)
		}
		return b.dev, b.name, nil
	case "nexus":
		ne, err := e.nexusByName(rec.Name)
		if err != nil {
			return nil, "", err
		}
		return ne.n, ne.rec.Name, nil
	}
	return nil, "", fmt.Errorf("%w: sharing a %s", ErrUnimplemented, rec.Kind)
}

// unshareLocked removes the export of an object; ErrNotFound when it has
// none. Callers hold opMu and save the state.
func (e *Engine) unshareLocked(_ context.Context, kind, name string) error {
	key := shareKey(kind, name)
	e.mu.RLock()
	s, ok := e.mu.shares[key]
	e.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%s %q is not shared: %w", kind, name, ErrNotFound)
	}
	if s.err == nil {
		var err error
		switch s.rec.Protocol {
		case protoNBD:
			err = e.front.removeNBD(s.exportName)
		case protoNVMf:
			err = e.front.removeNVMf(s.exportName)
		}
		if err != nil && !errors.Is(err, nbd.ErrExportNotFound) && !errors.Is(err, nvmetcp.ErrNotFound) {
			return fmt.Errorf("unshare %s %q: %w", kind, s.exportName, err)
		}
	}
	e.mu.Lock()
	delete(e.mu.shares, key)
	e.mu.Unlock()
	e.log.Info("unshared", "kind", kind, "name", s.exportName)
	return nil
}

// shareInfo describes the share of an object, or nil.
func (e *Engine) shareInfo(kind, name string) *enginev1.Share {
	e.mu.RLock()
	s, ok := e.mu.shares[shareKey(kind, name)]
	e.mu.RUnlock()
	if !ok || s.err != nil {
		return nil
	}
	return &enginev1.Share{
		Protocol:     protoEnum(s.rec.Protocol),
		Uri:          s.uri,
		AllowedHosts: slices.Clone(s.rec.AllowedHosts),
		AllowAnyHost: s.rec.AllowAnyHost,
	}
}

// frontends are the export servers of the engine.
type frontends struct {
	nbd     *nbd.Server
	nbdHost string
	nbdPort int
	nvmf    nvmfTarget
}

func (f *frontends) start(ctx context.Context, e *Engine) error {
	if e.cfg.NBDAddr != Off {
		f.nbd = nbd.NewServer(nbd.Config{ListenAddr: e.cfg.NBDAddr, Logger: e.cfg.Logger})
		if err := f.nbd.Start(ctx); err != nil {
			return fmt.Errorf("NBD server on %s: %w", e.cfg.NBDAddr, err)
		}
		f.nbdHost, f.nbdPort = advertise(f.nbd.Addr())
	}
	if e.cfg.NVMeAddr != Off {
		if err := f.nvmf.start(ctx, e); err != nil {
			if f.nbd != nil {
				_ = f.nbd.Close()
			}
			return fmt.Errorf("NVMe/TCP target on %s: %w", e.cfg.NVMeAddr, err)
		}
	}
	return nil
}

func (f *frontends) close(e *Engine) {
	f.nvmf.close(e)
	if f.nbd != nil {
		if err := f.nbd.Close(); err != nil {
			e.log.Warn("close NBD server", "err", err)
		}
	}
}

func (f *frontends) nbdAddr() string {
	if f.nbd == nil {
		return Off
	}
	return net.JoinHostPort(f.nbdHost, strconv.Itoa(f.nbdPort))
}

func (f *frontends) nvmfAddr() string { return f.nvmf.addr() }

func (f *frontends) addNBD(name string, dev blockdev.Device, rec shareRecord) (string, error) {
	if f.nbd == nil {
		return "", fmt.Errorf("NBD server is disabled (--nbd %s): %w", Off, ErrUnavailable)
	}
	var allowed []string
	if !rec.AllowAnyHost {
		allowed = rec.AllowedHosts
	}
	if err := f.nbd.AddExport(name, dev, nbd.ExportOptions{AllowedClients: allowed, Description: "kura " + rec.Kind + " " + name}); err != nil {
		return "", err
	}
	return nbd.URI(f.nbdHost, f.nbdPort, name), nil
}

func (f *frontends) removeNBD(name string) error {
	if f.nbd == nil {
		return nil
	}
	return f.nbd.RemoveExport(name)
}

func (f *frontends) addNVMf(name string, dev blockdev.Device, rec shareRecord) (string, error) {
	return f.nvmf.add(name, dev, rec)
}

func (f *frontends) removeNVMf(name string) error { return f.nvmf.remove(name) }

// advertise turns a listen address into the host and port clients use.
func advertise(a net.Addr) (string, int) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		h, p, _ := net.SplitHostPort(a.String())
		port, _ := strconv.Atoi(p)
		return h, port
	}
	host := ta.IP.String()
	if ta.IP.IsUnspecified() {
		host = "127.0.0.1"
		if h, err := hostIP(); err == nil {
			host = h
		}
	}
	return host, ta.Port
}

// hostIP returns the first non-loopback IPv4 address of the host.
func hostIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String(), nil
		}
	}
	return "", errors.New("no non-loopback address")
}

// nqnFor is the subsystem NQN of an export.
func nqnFor(name string) string { return nvmetcp.NQNFor(name) }
