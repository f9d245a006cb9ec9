package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/google/uuid"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvmetcp"
)

// nvmfTarget wires the NVMe/TCP target (internal/nvmetcp) into the engine:
// one subsystem with one namespace per export, NQN
// nqn.2019-05.io.kura:<export name>.
type nvmfTarget struct {
	t    *nvmetcp.Target
	e    *Engine
	host string
	port int
}

func (n *nvmfTarget) start(ctx context.Context, e *Engine) error {
	// Reservations are persisted there; without the directory every
	// reservation command failed with Internal Error.
	stateDir := filepath.Join(e.cfg.DataDir, "nvmf")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	t, err := nvmetcp.NewTarget(nvmetcp.TargetConfig{
		ListenAddr: e.cfg.NVMeAddr,
		StateDir:   stateDir,
		Logger:     e.cfg.Logger,
	})
	if err != nil {
		return err
	}
	if err := t.Start(ctx); err != nil {
		return err
	}
	n.t, n.e = t, e
	n.host, n.port = advertise(t.Addr())
	return nil
}

func (n *nvmfTarget) close(e *Engine) {
	if n.t == nil {
		return
	}
	if err := n.t.Close(); err != nil {
		e.log.Warn("close NVMe/TCP target", "err", err)
	}
}

func (n *nvmfTarget) addr() string {
	if n.t == nil {
		return Off
	}
	return net.JoinHostPort(n.host, strconv.Itoa(n.port))
}

func (n *nvmfTarget) add(name string, dev blockdev.Device, rec shareRecord) (string, error) {
	if n.t == nil {
		return "", fmt.Errorf("NVMe/TCP target is disabled (--nvmf %s): %w", Off, ErrUnavailable)
	}
	nqn := nqnFor(name)
	cfg := nvmetcp.SubsystemConfig{
		NQN:          nqn,
		Device:       dev,
		AllowedHosts: rec.AllowedHosts,
		AllowAnyHost: rec.AllowAnyHost,
	}
	if rec.Kind == "replica" {
		cfg.Snapshots = &replicaSnapshots{e: n.e, pool: rec.Pool, replica: rec.Name}
	}
	if id, err := uuid.Parse(rec.Name); err == nil {
		cfg.UUID = id
		cfg.NGUID = id
	} else {
		id := uuid.NewSHA1(uuid.NameSpaceURL, []byte(nqn))
		cfg.UUID = id
		cfg.NGUID = id
	}
	if err := n.t.AddSubsystem(cfg); err != nil {
		return "", err
	}
	return "nvmf://" + net.JoinHostPort(n.host, strconv.Itoa(n.port)) + "/" + nqn, nil
}

func (n *nvmfTarget) remove(name string) error {
	if n.t == nil {
		return nil
	}
	return n.t.RemoveSubsystem(nqnFor(name))
}
