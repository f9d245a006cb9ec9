package engine

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

// TestConcurrentCreates issues the same and different creates from many
// goroutines: every call succeeds, repeated creates return one replica.
func TestConcurrentCreates(t *testing.T) {
	dir := t.TempDir()
	te := startEngine(t, filepath.Join(dir, "data"))
	ctx := ctxT(t)
	disk := sparseFile(t, dir, "disk", 128<<20)
	if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{disk}, ClusterSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	uuids := make([]string, 16)
	errs := make([]error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("r%d", i%4)
			r, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "p", Name: name, Size: 4 << 20, Thin: true,
				Share: &enginev1.ShareOptions{Protocol: enginev1.ShareProtocol_SHARE_PROTOCOL_NBD}})
			errs[i] = err
			if err == nil {
				uuids[i] = r.GetReplica().GetUuid()
			}
			_, _ = te.replica.ListReplicas(ctx, &enginev1.ListReplicasRequest{})
			_, _ = te.pool.ListPools(ctx, &enginev1.ListPoolsRequest{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		if uuids[i] != uuids[i%4] {
			t.Fatalf("create %d returned another replica", i)
		}
	}
	l, err := te.replica.ListReplicas(ctx, &enginev1.ListReplicasRequest{})
	if err != nil || len(l.GetReplicas()) != 4 {
		t.Fatalf("list: %v %v", l, err)
	}
	for _, r := range l.GetReplicas() {
		if r.GetShare() == nil {
			t.Fatalf("%s not shared", r.GetName())
		}
	}
}

// TestNoGoroutineLeak: a stopped engine leaves no goroutines behind.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		dir := t.TempDir()
		te := startEngine(t, filepath.Join(dir, "data"))
		ctx := ctxT(t)
		disk := sparseFile(t, dir, "disk", 64<<20)
		if _, err := te.pool.CreatePool(ctx, &enginev1.CreatePoolRequest{Name: "p", Disks: []string{disk}}); err != nil {
			t.Fatal(err)
		}
		for _, proto := range []enginev1.ShareProtocol{enginev1.ShareProtocol_SHARE_PROTOCOL_NBD, enginev1.ShareProtocol_SHARE_PROTOCOL_NVMF} {
			name := "r" + proto.String()
			if _, err := te.replica.CreateReplica(ctx, &enginev1.CreateReplicaRequest{Pool: "p", Name: name[len(name)-3:], Size: 4 << 20,
				Share: &enginev1.ShareOptions{Protocol: proto, AllowAnyHost: true}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := te.nexus.CreateNexus(ctx, &enginev1.CreateNexusRequest{Name: "nx", Children: []string{"bdev:///VMF"}}); err != nil {
			t.Fatal(err)
		}
		te.stop()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := runtime.NumGoroutine()
		if after <= before+1 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines before, %d after stop:\n%s", before, after, buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
