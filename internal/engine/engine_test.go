package engine

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// testEngine is an engine running in-process, reached over a real gRPC
// connection (bufconn).
type testEngine struct {
	e       *Engine
	conn    *grpc.ClientConn
	pool    enginev1.PoolServiceClient
	replica enginev1.ReplicaServiceClient
	bdev    enginev1.BdevServiceClient
	host    enginev1.HostServiceClient
	nexus   enginev1.NexusServiceClient
	health  healthpb.HealthClient
	stop    func()
}

func quietLogger() *slog.Logger {
	if os.Getenv("KURA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startEngine runs an engine on dataDir until the returned stop is called
// (also at test cleanup).
func startEngine(t testing.TB, dataDir string) *testEngine {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	e, err := New(Config{
		DataDir: dataDir, GRPCListener: lis, NVMeAddr: "127.0.0.1:0", NBDAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		NodeName: "test-node", Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case <-e.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("engine did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("engine did not start in 20 s")
	}
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	te := &testEngine{
		e: e, conn: conn,
		pool:    enginev1.NewPoolServiceClient(conn),
		replica: enginev1.NewReplicaServiceClient(conn),
		bdev:    enginev1.NewBdevServiceClient(conn),
		host:    enginev1.NewHostServiceClient(conn),
		nexus:   enginev1.NewNexusServiceClient(conn),
		health:  healthpb.NewHealthClient(conn),
	}
	stopped := false
	te.stop = func() {
		if stopped {
			return
		}
		stopped = true
		conn.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("engine Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("engine did not stop in 20 s")
		}
	}
	t.Cleanup(te.stop)
	return te
}

// sparseFile creates a sparse file of size bytes.
func sparseFile(t testing.TB, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHealth(t *testing.T) {
	te := startEngine(t, t.TempDir())
	resp, err := te.health.Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, want SERVING", resp.GetStatus())
	}
}

func TestPoolReplicaLifecycle(t *testing.T) {
	dir := t.TempDir()
	te := startEngine(t, filepath.Join(dir, "data"))
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 100<<20)

	p, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "tpool", Disks: []string{disk}})
	if err != nil {
		t.Fatal(err)
	}
	if p.GetPool().GetState() != enginev1.PoolState_POOL_STATE_ONLINE || p.GetPool().GetCapacity() == 0 || p.GetPool().GetCapacity() > 100<<20 {
		t.Fatalf("pool = %v", p.GetPool())
	}
	// Idempotent create.
	p2, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "tpool", Disks: []string{disk}})
	if err != nil {
		t.Fatalf("repeated create: %v", err)
	}
	if p2.GetPool().GetUuid() != p.GetPool().GetUuid() {
		t.Fatalf("repeated create changed uuid")
	}

	r1, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "tpool", Name: "replica1", Size: 10 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "tpool", Name: "replica2", Size: 50 << 20, Thin: true}); err != nil {
		t.Fatal(err)
	}
	again, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "tpool", Name: "replica1", Size: 10 << 20})
	if err != nil {
		t.Fatalf("repeated replica create: %v", err)
	}
	if again.GetReplica().GetUuid() != r1.GetReplica().GetUuid() {
		t.Fatal("repeated replica create changed uuid")
	}
	list, err := te.replica.ListReplicas(ctx, &enginev1.ListReplicasRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetReplicas()); n != 2 {
		t.Fatalf("%d replicas, want 2", n)
	}
	got := list.GetReplicas()[0]
	if got.GetName() != "replica1" || got.GetThin() || got.GetSize() != 10<<20 || got.GetPool() != "tpool" {
		t.Fatalf("replica1 = %v", got)
	}
	if !list.GetReplicas()[1].GetThin() || list.GetReplicas()[1].GetSize() != 50<<20 {
		t.Fatalf("replica2 = %v", list.GetReplicas()[1])
	}
	pl, err := te.pool.ListPools(ctx, &enginev1.ListPoolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if pl.GetPools()[0].GetUsed() < 10<<20 || pl.GetPools()[0].GetReplicaCount() != 2 {
		t.Fatalf("pool after creates = %v", pl.GetPools()[0])
	}

	if _, err := te.replica.ResizeReplica(ctx, &enginev1.ResizeReplicaRequest{Pool: "tpool", Name: "replica1", Size: 20 << 20}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"replica1", "replica2"} {
		if _, err := te.replica.DestroyReplica(ctx, &enginev1.DestroyReplicaRequest{Pool: "tpool", Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	list, err = te.replica.ListReplicas(ctx, &enginev1.ListReplicasRequest{})
	if err != nil || len(list.GetReplicas()) != 0 {
		t.Fatalf("after destroy: %v %v", list, err)
	}
	if _, err := te.pool.DestroyPool(ctx, &enginev1.DestroyPoolRequest{Name: "tpool"}); err != nil {
		t.Fatal(err)
	}
	pl, err = te.pool.ListPools(ctx, &enginev1.ListPoolsRequest{})
	if err != nil || len(pl.GetPools()) != 0 {
		t.Fatalf("after pool destroy: %v %v", pl, err)
	}
	// The disk is free again: a new pool can be created on it.
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "again", Disks: []string{disk}}); err != nil {
		t.Fatalf("create on wiped disk: %v", err)
	}
}

func TestHostInfo(t *testing.T) {
	te := startEngine(t, t.TempDir())
	h, err := te.host.GetHostInfo(ctxT(t), &enginev1.GetHostInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if h.GetNodeName() != "test-node" || h.GetVersion() == "" || h.GetCpuCount() == 0 || h.GetNbdEndpoint() == "" {
		t.Fatalf("host info = %v", h)
	}
	if _, err := os.Stat("/sys/block"); err == nil && len(h.GetBlockDevices()) == 0 {
		t.Fatalf("no block devices reported")
	}
	for _, d := range h.GetBlockDevices() {
		if d.GetSize() == 0 || d.GetPath() == "" {
			t.Fatalf("bad block device %v", d)
		}
	}
}
