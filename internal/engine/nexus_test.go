package engine

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func TestNexusLifecycleAndRestart(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	te := startEngine(t, data)
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 128<<20)
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{disk}, ClusterSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"r1", "r2", "r3", "r4"} {
		if _, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "p", Name: n, Size: 16 << 20, Thin: true}); err != nil {
			t.Fatal(err)
		}
	}
	nx, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "vol1", Children: []string{"bdev:///r1", "bdev:///r2"}})
	if err != nil {
		t.Fatal(err)
	}
	if nx.GetNexus().GetState() != enginev1.NexusState_NEXUS_STATE_ONLINE || len(nx.GetNexus().GetChildren()) != 2 || nx.GetNexus().GetSize() != 16<<20 {
		t.Fatalf("nexus = %v", nx.GetNexus())
	}
	// Idempotent create.
	if _, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "vol1", Children: []string{"bdev:///r1", "bdev:///r2"}}); err != nil {
		t.Fatalf("repeated create: %v", err)
	}
	// Same name, other children: AlreadyExists.
	if _, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "vol1", Children: []string{"bdev:///r1"}}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("create with other children: %v, want AlreadyExists", err)
	}
	// A replica used as a child cannot be destroyed.
	_, err = te.replica.DestroyReplica(ctx, &enginev1.DestroyReplicaRequest{Pool: "p", Name: "r1"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("destroy child replica: %v, want FailedPrecondition", err)
	}
	pub, err := te.nexus.PublishNexus(ctx, &enginev1.PublishNexusRequest{Name: "vol1", Options: &enginev1.ShareOptions{Protocol: enginev1.ShareProtocol_SHARE_PROTOCOL_NBD}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(pub.GetNexus().GetShare().GetUri(), "/vol1") {
		t.Fatalf("publish uri %q", pub.GetNexus().GetShare().GetUri())
	}
	// Offline, online (partial rebuild), add a third child (full rebuild).
	if _, err := te.nexus.OfflineChild(ctx, &enginev1.ChildRequest{Nexus: "vol1", Uri: "bdev:///r2"}); err != nil {
		t.Fatal(err)
	}
	l, _ := te.nexus.ListNexuses(ctx, &enginev1.ListNexusesRequest{Name: "vol1"})
	if l.GetNexuses()[0].GetState() != enginev1.NexusState_NEXUS_STATE_DEGRADED {
		t.Fatalf("after offline: %v", l.GetNexuses()[0])
	}
	if _, err := te.nexus.OfflineChild(ctx, &enginev1.ChildRequest{Nexus: "vol1", Uri: "bdev:///r1"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("offline last healthy child: %v, want FailedPrecondition", err)
	}
	if _, err := te.nexus.OnlineChild(ctx, &enginev1.ChildRequest{Nexus: "vol1", Uri: "bdev:///r2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.nexus.AddChild(ctx, &enginev1.AddChildRequest{Nexus: "vol1", Uri: "bdev:///r3"}); err != nil {
		t.Fatal(err)
	}
	waitOnline := func(te *testEngine) *enginev1.Nexus {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			l, err := te.nexus.ListNexuses(ctx, &enginev1.ListNexusesRequest{Name: "vol1"})
			if err != nil {
				t.Fatal(err)
			}
			if n := l.GetNexuses()[0]; n.GetState() == enginev1.NexusState_NEXUS_STATE_ONLINE && len(n.GetChildren()) == 3 {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("nexus not online: %v", l.GetNexuses()[0])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOnline(te)
	if _, err := te.nexus.RemoveChild(ctx, &enginev1.RemoveChildRequest{Nexus: "vol1", Uri: "bdev:///r3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := te.nexus.AddChild(ctx, &enginev1.AddChildRequest{Nexus: "vol1", Uri: "bdev:///r3"}); err != nil {
		t.Fatal(err)
	}
	waitOnline(te)

	// A remote child over NVMe/TCP (our own target, through the initiator).
	sh, err := te.replica.ShareReplica(ctx, &enginev1.ShareReplicaRequest{Pool: "p", Name: "r4", Options: &enginev1.ShareOptions{Protocol: enginev1.ShareProtocol_SHARE_PROTOCOL_NVMF, AllowAnyHost: true}})
	if err != nil {
		t.Fatal(err)
	}
	remote := sh.GetReplica().GetShare().GetUri()
	if !strings.HasPrefix(remote, "nvmf://") {
		t.Fatalf("nvmf share uri %q", remote)
	}
	nx2, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "vol2", Children: []string{remote}, WriteIntent: true})
	if err != nil {
		t.Fatalf("nexus over nvmf child: %v", err)
	}
	if nx2.GetNexus().GetState() != enginev1.NexusState_NEXUS_STATE_ONLINE || nx2.GetNexus().GetSize() != 16<<20 {
		t.Fatalf("nvmf nexus = %v", nx2.GetNexus())
	}
	if _, err := te.nexus.DestroyNexus(ctx, &enginev1.DestroyNexusRequest{Name: "vol2"}); err != nil {
		t.Fatal(err)
	}

	hist, err := te.e.nexusByName("vol1")
	if err != nil || len(hist.n.RebuildHistory()) == 0 {
		t.Fatalf("no rebuild history: %v", err)
	}

	// Restart: the nexus comes back with its three children and its share.
	te.stop()
	te2 := startEngine(t, data)
	n := waitOnline(te2)
	if n.GetShare().GetProtocol() != enginev1.ShareProtocol_SHARE_PROTOCOL_NBD {
		t.Fatalf("nexus share after restart: %v", n)
	}
	if _, err := te2.nexus.DestroyNexus(ctx, &enginev1.DestroyNexusRequest{Name: "vol1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := te2.replica.DestroyReplica(ctx, &enginev1.DestroyReplicaRequest{Pool: "p", Name: "r1"}); err != nil {
		t.Fatalf("destroy replica after nexus destroy: %v", err)
	}
}
