package nvmetcp

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

func TestParseURI(t *testing.T) {
	cfg, err := ParseURI("nvmf://10.0.0.5/nqn.2019-05.io.kura:vol1?hostnqn=nqn.2014-08.org.nvmexpress:uuid:abc&nr_io_queues=4&queue_size=64&kato_ms=2000&reconnect_timeout_ms=1500&io_timeout_ms=2500&hdr_digest=1&data_digest=1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "10.0.0.5:8420" || cfg.SubNQN != "nqn.2019-05.io.kura:vol1" || cfg.HostNQN != "nqn.2014-08.org.nvmexpress:uuid:abc" ||
		cfg.IOQueues != 4 || cfg.QueueSize != 64 || cfg.KATO != 2*time.Second || cfg.ReconnectTimeout != 1500*time.Millisecond || cfg.IOTimeout != 2500*time.Millisecond || !cfg.HeaderDigest || !cfg.DataDigest {
		t.Fatalf("%+v", cfg)
	}
	cfg, err = ParseURI("nvmf+tcp://[::1]:4420/nqn.2019-05.io.kura:v?kato_ms=0&io_timeout_ms=0")
	if err != nil || cfg.Addr != "[::1]:4420" || cfg.KATO >= 0 || cfg.IOTimeout >= 0 {
		t.Fatalf("%+v %v", cfg, err)
	}
	for _, bad := range []string{
		"nvmf://host/nqn.2019-05.io.kura:v?bogus=1",
		"nvmf://host/nqn.2019-05.io.kura:v?nr_io_queues=0",
		"nvmf://host/nqn.2019-05.io.kura:v?nr_io_queues=65",
		"nvmf://host/notannqn",
		"nvmf://host/nqn.2019-05.io.kura:v?reconnect_timeout_ms=0",
		"nvmf:///nqn.2019-05.io.kura:v",
		"nvmf://host:99999/nqn.2019-05.io.kura:v",
		"nvmf://host/nqn.2019-05.io.kura:v?hostnqn=bad",
		"nvmf://host/nqn.2019-05.io.kura:v?hdr_digest=2",
		"nvmf://host/nqn.2019-05.io.kura:v?io_timeout_ms=-1",
		"nvmf://host/nqn.2019-05.io.kura:v?io_timeout_ms=3600001",
		"malloc:///x",
	} {
		if _, err := ParseURI(bad); !errors.Is(err, blockdev.ErrInvalidURI) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestRegistryOpensNvmf(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "reg", 4<<20, 4096)
	r := blockdev.NewRegistry()
	RegisterScheme(r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, scheme := range []string{"nvmf", "nvmf+tcp"} {
		d, err := r.Open(ctx, scheme+"://"+tg.Addr().String()+"/"+nqn+"?nr_io_queues=1&hostnqn="+testHost)
		if err != nil {
			t.Fatal(err)
		}
		if d.Size() != 4<<20 || d.BlockSize() != 4096 {
			t.Fatalf("geometry %d/%d", d.Size(), d.BlockSize())
		}
		d.Close()
	}
}
