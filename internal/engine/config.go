package engine

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"time"
)

// Default listen addresses. Everything listens on loopback unless told
// otherwise.
const (
	DefaultGRPCAddr = "127.0.0.1:10124"
	DefaultNVMeAddr = "127.0.0.1:8420"
	DefaultNBDAddr  = "127.0.0.1:10809"
)

// Config configures an Engine.
type Config struct {
	// DataDir holds the engine state file. Required.
	DataDir string
	// GRPCAddr is the gRPC API address; default DefaultGRPCAddr.
	GRPCAddr string
	// NVMeAddr is the NVMe/TCP target address; default DefaultNVMeAddr;
	// "off" disables the target.
	NVMeAddr string
	// NBDAddr is the NBD server address; default DefaultNBDAddr; "off"
	// disables the server.
	NBDAddr string
	// MetricsAddr serves Prometheus metrics at http://ADDR/metrics; empty
	// or "off" disables it.
	MetricsAddr string
	// NodeName identifies this engine; default the host name.
	NodeName string
	// Version is reported by HostService; default the module build info.
	Version string
	// Logger; default slog.Default().
	Logger *slog.Logger
	// ChildTimeout bounds every I/O of a nexus child: a child that takes
	// longer (a hung disk, a remote engine that died) is faulted and the
	// I/O completes on the healthy children. Default DefaultChildTimeout.
	ChildTimeout time.Duration
	// GRPCListener, when set, is served instead of listening on GRPCAddr
	// (tests use a bufconn listener).
	GRPCListener net.Listener
}

// DefaultChildTimeout is the nexus child I/O timeout of an engine. The
// reference system uses 5 s and its Helm chart raises it to 110 s under load;
// 10 s keeps a dead replica from stalling a volume for long without faulting
// healthy children on a busy disk.
const DefaultChildTimeout = 10 * time.Second

// Off disables a frontend when used as its address.
const Off = "off"

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		return fmt.Errorf("%w: engine needs a data directory", ErrInvalidArgument)
	}
	if c.GRPCAddr == "" {
		c.GRPCAddr = DefaultGRPCAddr
	}
	if c.NVMeAddr == "" {
		c.NVMeAddr = DefaultNVMeAddr
	}
	if c.NBDAddr == "" {
		c.NBDAddr = DefaultNBDAddr
	}
	if c.ChildTimeout <= 0 {
		c.ChildTimeout = DefaultChildTimeout
	}
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.NodeName = h
	}
	if c.Version == "" {
		c.Version = buildVersion()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for _, a := range []string{c.GRPCAddr, c.NVMeAddr, c.NBDAddr, c.MetricsAddr} {
		if a == Off || a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%w: listen address %q: %v", ErrInvalidArgument, a, err)
		}
	}
	return nil
}

// Version of this build, overridable with
// -ldflags "-X github.com/kura-io/kura/internal/engine.version=v1.2.3".
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v != "" && v != "(devel)" {
		return v // a module version; VCS builds already include the revision
	}
	v = "devel"
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}

// Version returns the version string of this build.
func Version() string { return buildVersion() }
