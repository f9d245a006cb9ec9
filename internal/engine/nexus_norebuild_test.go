package engine

import (
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// TestAddChildNoRebuildAndStartRebuild: AddChild with norebuild adds the
// child OUT_OF_SYNC (no rebuild, nexus degraded), it stays so across an
// engine restart, and StartRebuild rebuilds it; StartRebuild's errors map
// to FAILED_PRECONDITION and NOT_FOUND.
func TestAddChildNoRebuildAndStartRebuild(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	te := startEngine(t, data)
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 128<<20)
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{disk}, ClusterSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"r1", "r2", "r3"} {
		if _, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "p", Name: n, Size: 8 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "vol1", Children: []string{"bdev:///r1", "bdev:///r2"}}); err != nil {
		t.Fatal(err)
	}
	ne, err := te.e.nexusByName("vol1")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	if _, err := ne.n.WriteAt(buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	resp, err := te.nexus.AddChild(ctx, &enginev1.AddChildRequest{Nexus: "vol1", Uri: "bdev:///r3", Norebuild: true})
	if err != nil {
		t.Fatal(err)
	}
	check := func(n *enginev1.Nexus, when string) {
		t.Helper()
		if n.GetState() != enginev1.NexusState_NEXUS_STATE_DEGRADED || n.GetRebuildCount() != 0 || len(n.GetChildren()) != 3 {
			t.Fatalf("%s: nexus %v, want degraded, no rebuild, 3 children", when, n)
		}
		if c := n.GetChildren()[2]; c.GetUri() != "bdev:///r3" || c.GetState() != enginev1.ChildState_CHILD_STATE_OUT_OF_SYNC || c.GetReason() == "" {
			t.Fatalf("%s: child %v, want bdev:///r3 out of sync with a reason", when, c)
		}
	}
	check(resp.GetNexus(), "after add")
	rb := enginev1.NewRebuildServiceClient(te.conn)
	req := func(nexus, uri string) *enginev1.RebuildRequest {
		return &enginev1.RebuildRequest{Nexus: nexus, Uri: uri}
	}
	if _, err := rb.GetRebuildState(ctx, req("vol1", "bdev:///r3")); status.Code(err) != codes.NotFound {
		t.Fatalf("rebuild state before start: %v, want NotFound", err)
	}
	for _, tc := range []struct {
		nexus, uri string
		code       codes.Code
	}{
		{"vol1", "bdev:///r1", codes.FailedPrecondition}, // healthy
		{"vol1", "bdev:///nope", codes.NotFound},
		{"nope", "bdev:///r3", codes.NotFound},
		{"vol1", "", codes.InvalidArgument},
	} {
		if _, err := rb.StartRebuild(ctx, req(tc.nexus, tc.uri)); status.Code(err) != tc.code {
			t.Errorf("StartRebuild(%s, %s): %v, want %v", tc.nexus, tc.uri, err, tc.code)
		}
	}

	// Restart: still out of sync, not resynced by itself.
	te.stop()
	te = startEngine(t, data)
	l, err := te.nexus.ListNexuses(ctx, &enginev1.ListNexusesRequest{Name: "vol1"})
	if err != nil {
		t.Fatal(err)
	}
	check(l.GetNexuses()[0], "after restart")
	time.Sleep(100 * time.Millisecond)
	l, _ = te.nexus.ListNexuses(ctx, &enginev1.ListNexusesRequest{Name: "vol1"})
	check(l.GetNexuses()[0], "a moment after restart")

	rb = enginev1.NewRebuildServiceClient(te.conn)
	st, err := rb.StartRebuild(ctx, req("vol1", "bdev:///r3"))
	if err != nil {
		t.Fatal(err)
	}
	switch st.GetState() {
	case enginev1.RebuildState_REBUILD_STATE_RUNNING, enginev1.RebuildState_REBUILD_STATE_PAUSED, enginev1.RebuildState_REBUILD_STATE_COMPLETED:
	default:
		t.Fatalf("StartRebuild state %v", st.GetState())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		l, err := te.nexus.ListNexuses(ctx, &enginev1.ListNexusesRequest{Name: "vol1"})
		if err != nil {
			t.Fatal(err)
		}
		if n := l.GetNexuses()[0]; n.GetState() == enginev1.NexusState_NEXUS_STATE_ONLINE {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not online after rebuild start: %v", l.GetNexuses()[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := rb.StartRebuild(ctx, req("vol1", "bdev:///r3")); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("StartRebuild on the rebuilt child: %v, want FailedPrecondition", err)
	}
	h, err := rb.GetRebuildHistory(ctx, &enginev1.GetRebuildHistoryRequest{Nexus: "vol1"})
	if err != nil {
		t.Fatal(err)
	}
	recs := h.GetRecords()
	if len(recs) == 0 || recs[len(recs)-1].GetChildUri() != "bdev:///r3" || recs[len(recs)-1].GetStats().GetPartial() ||
		recs[len(recs)-1].GetState() != enginev1.RebuildState_REBUILD_STATE_COMPLETED {
		t.Fatalf("history %v, want a completed full rebuild of r3", recs)
	}
	// The rebuilt child holds the data: fault the others and read with r3
	// as the only healthy child.
	ne, _ = te.e.nexusByName("vol1")
	for _, c := range []string{"bdev:///r1", "bdev:///r2"} {
		if _, err := te.nexus.FaultChild(ctx, &enginev1.ChildRequest{Nexus: "vol1", Uri: c}); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, len(buf))
	if _, err := ne.n.ReadAt(got, 1<<20); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != buf[i] {
			t.Fatalf("byte %d from the rebuilt child: %d, want %d", i, got[i], buf[i])
		}
	}
}
