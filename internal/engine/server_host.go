package engine

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func (s *apiServer) GetHostInfo(_ context.Context, _ *enginev1.GetHostInfoRequest) (*enginev1.GetHostInfoResponse, error) {
	e := s.e
	host, _ := os.Hostname()
	resp := &enginev1.GetHostInfoResponse{
		NodeName:      e.cfg.NodeName,
		Hostname:      host,
		Version:       e.cfg.Version,
		UptimeSeconds: uint64(time.Since(e.started) / time.Second),
		Kernel:        readTrim("/proc/sys/kernel/osrelease"),
		CpuCount:      uint32(runtime.NumCPU()),
		MemoryBytes:   memTotal(),
		GrpcEndpoint:  e.grpcAddr.String(),
		NvmfEndpoint:  e.front.nvmfAddr(),
		NbdEndpoint:   e.front.nbdAddr(),
	}
	e.mu.RLock()
	claims := make(map[string]string, len(e.mu.claims))
	for k, v := range e.mu.claims {
		claims[k] = v
	}
	e.mu.RUnlock()
	resp.BlockDevices = sysBlockDevices("/sys/block", claims)
	return resp, nil
}

// sysBlockDevices lists the block devices under sysBlock (/sys/block),
// skipping empty ones (unattached loop devices, empty drives).
func sysBlockDevices(sysBlock string, claims map[string]string) []*enginev1.BlockDevice {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil
	}
	var out []*enginev1.BlockDevice
	for _, ent := range ents {
		name := ent.Name()
		dir := filepath.Join(sysBlock, name)
		sectors, err := strconv.ParseUint(readTrim(filepath.Join(dir, "size")), 10, 64)
		if err != nil || sectors == 0 {
			continue
		}
		bd := &enginev1.BlockDevice{
			Name:       name,
			Path:       "/dev/" + name,
			Size:       sectors * 512, // sysfs size is always in 512-byte sectors
			Model:      readTrim(filepath.Join(dir, "device", "model")),
			Rotational: readTrim(filepath.Join(dir, "queue", "rotational")) == "1",
			ReadOnly:   readTrim(filepath.Join(dir, "ro")) == "1",
			Removable:  readTrim(filepath.Join(dir, "removable")) == "1",
		}
		if bd.Model == "" && strings.HasPrefix(name, "loop") {
			if bf := readTrim(filepath.Join(dir, "loop", "backing_file")); bf != "" {
				bd.Model = "loop: " + bf
			}
		}
		if key, err := deviceKey(bd.Path); err == nil {
			if owner, ok := claims[key]; ok {
				bd.InUseBy = owner
			}
		}
		out = append(out, bd)
	}
	slices.SortFunc(out, func(a, b *enginev1.BlockDevice) int { return cmpStr(a.Name, b.Name) })
	return out
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func memTotal() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb uint64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	return 0
}
