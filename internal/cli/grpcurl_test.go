package cli

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kura-io/kura/internal/testtool"
)

// TestGRPCurl lists the services through server reflection and calls the
// standard health service and the pool API with grpcurl.
func TestGRPCurl(t *testing.T) {
	grpcurl := testtool.Require(t, "grpcurl")[0]
	e := startEngineProc(t, filepath.Join(t.TempDir(), "data"))
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(grpcurl, append([]string{"-plaintext"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := run(e.grpc, "list")
	for _, svc := range []string{
		"grpc.health.v1.Health", "kura.engine.v1.PoolService", "kura.engine.v1.ReplicaService",
		"kura.engine.v1.BdevService", "kura.engine.v1.HostService", "kura.engine.v1.NexusService",
		"kura.engine.v1.RebuildService",
	} {
		if !strings.Contains(list, svc) {
			t.Errorf("grpcurl list lacks %s:\n%s", svc, list)
		}
	}
	if out := run(e.grpc, "list", "kura.engine.v1.RebuildService"); !strings.Contains(out, "kura.engine.v1.RebuildService.StartRebuild") {
		t.Errorf("RebuildService methods lack StartRebuild:\n%s", out)
	}
	if out, err := exec.Command(grpcurl, "-plaintext", "-d", `{"nexus": "nope", "uri": "bdev:///r1"}`, e.grpc,
		"kura.engine.v1.RebuildService/StartRebuild").CombinedOutput(); err == nil || !strings.Contains(string(out), "NotFound") {
		t.Errorf("StartRebuild on an unknown nexus: %v %s", err, out)
	}
	if out := run(e.grpc, "grpc.health.v1.Health/Check"); !strings.Contains(out, `"SERVING"`) {
		t.Errorf("health: %s", out)
	}
	if out := run("-d", `{"uri": "malloc:///m0?size_mb=4"}`, e.grpc, "kura.engine.v1.BdevService/CreateBdev"); !strings.Contains(out, `"name": "m0"`) {
		t.Errorf("CreateBdev: %s", out)
	}
	if out := run(e.grpc, "kura.engine.v1.HostService/GetHostInfo"); !strings.Contains(out, `"nodeName"`) {
		t.Errorf("GetHostInfo: %s", out)
	}
	// A gRPC error code reaches grpcurl.
	out, err := exec.Command(grpcurl, "-plaintext", "-d", `{"name": "nope"}`, e.grpc, "kura.engine.v1.PoolService/DestroyPool").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "NotFound") {
		t.Errorf("DestroyPool nope: %v %s", err, out)
	}
}
