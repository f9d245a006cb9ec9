package benchsuite

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Profile measures one workload against the Kura NBD server alone
// (kurabench-nbd on scheme:// of the backing file) while it records a CPU
// profile to profPath. cfg.Only and cfg.Workloads are ignored.
func Profile(ctx context.Context, cfg Config, scheme string, w Workload, profPath string) (Metrics, error) {
	if cfg.KuraNBD == "" {
		return Metrics{}, fmt.Errorf("%w: kurabench-nbd not built", ErrUnavailable)
	}
	if cfg.Fio == "" {
		fio, err := exec.LookPath("fio")
		if err != nil {
			return Metrics{}, fmt.Errorf("fio not installed: %w", err)
		}
		cfg.Fio = fio
	}
	if err := prepareFile(cfg.File, cfg.Size, cfg.logf); err != nil {
		return Metrics{}, err
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return Metrics{}, err
	}
	abs, err := filepath.Abs(profPath)
	if err != nil {
		return Metrics{}, err
	}
	uri := scheme + "://" + cfg.File
	if scheme == "malloc" {
		uri = fmt.Sprintf("malloc:///bench?size_mb=%d", cfg.Size>>20)
	}
	port, err := freePort()
	if err != nil {
		return Metrics{}, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := startProc("kura-nbd-profile", cfg.WorkDir, nil, cfg.KuraNBD, "--uri", uri, "--addr", addr, "--export", "bench", "--cpuprofile", abs)
	if err != nil {
		return Metrics{}, err
	}
	t := &Target{FioArgs: []string{"--ioengine=nbd", "--uri=" + nbdURI(port, "bench")}, procs: []*proc{p}}
	defer t.stop()
	if err := waitTCP(ctx, p, addr, 20*time.Second); err != nil {
		return Metrics{}, err
	}
	quiesce([]string{cfg.File})
	m, err := measure(ctx, cfg, t, w)
	if serr := t.stop(); serr != nil && err == nil {
		err = serr
	}
	return m, err
}
