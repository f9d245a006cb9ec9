package engine

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	te := startEngine(t, filepath.Join(dir, "data"))
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 64<<20)
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{disk}}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "p", Name: "r1", Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + te.e.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`kura_pool_online{pool="p"} 1`,
		`kura_pool_capacity_bytes{pool="p"}`,
		`kura_replica_size_bytes{pool="p",replica="r1"} 8.388608e+06`,
		"# TYPE kura_pool_used_bytes gauge",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
}
