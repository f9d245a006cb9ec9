package cli

import (
	"bytes"
	"testing"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
)

func TestHumanSize(t *testing.T) {
	for _, tc := range []struct {
		in   uint64
		want string
	}{
		{0, "0 B"}, {512, "512 B"}, {999, "999 B"}, {1000, "1.0 KiB"}, {4096, "4.0 KiB"},
		{10 << 20, "10.0 MiB"}, {96 << 20, "96.0 MiB"}, {1000 << 20, "1.0 GiB"},
		{1 << 30, "1.0 GiB"}, {1536 << 20, "1.5 GiB"}, {5 << 40, "5.0 TiB"},
	} {
		if got := humanSize(tc.in); got != tc.want {
			t.Errorf("humanSize(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		def  uint64
		want uint64
		bad  bool
	}{
		{"10", 1 << 20, 10 << 20, false},
		{"1000", 1 << 20, 1000 << 20, false},
		{"10GiB", 1 << 20, 10 << 30, false},
		{"10G", 1 << 20, 10 << 30, false},
		{"512MiB", 1, 512 << 20, false},
		{"1.5GiB", 1, 1536 << 20, false},
		{"4096B", 1 << 20, 4096, false},
		{"1GB", 1, 1e9, false},
		{"4MiB", 1, 4 << 20, false},
		{"", 1, 0, true},
		{"ten", 1, 0, true},
		{"10 parsecs", 1, 0, true},
		{"-5", 1, 0, true},
		{"0.5B", 1, 0, true},
		{"99999999999999999999TiB", 1, 0, true},
	} {
		got, err := parseSize(tc.in, tc.def)
		if tc.bad {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

// TestTablesMatchSeed checks the table layouts against the reference
// client's output in the seed README (columns and human sizes).
func TestTablesMatchSeed(t *testing.T) {
	var out bytes.Buffer
	g := &globals{stdout: &out}
	printPools(g, []*enginev1.Pool{{Name: "tpool", State: enginev1.PoolState_POOL_STATE_ONLINE, Capacity: 96 << 20, Disks: []string{"tpool"}}})
	want := "" +
		"NAME                 STATE        CAPACITY         USED   DISKS\n" +
		"tpool                online       96.0 MiB          0 B   tpool\n"
	if out.String() != want {
		t.Errorf("pool list:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	printReplicas(g, []*enginev1.Replica{
		{Pool: "tpool", Name: "replica1", Size: 10 << 20, Allocated: 12 << 20},
		{Pool: "tpool", Name: "replica2", Size: 1000 << 20, Thin: true},
	})
	want = "" +
		"POOL                 NAME                 THIN           SIZE     ALLOCATED\n" +
		"tpool                replica1             false       10.0 MiB     12.0 MiB\n" +
		"tpool                replica2             true         1.0 GiB          0 B\n"
	if out.String() != want {
		t.Errorf("replica list:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	printReplicas(g, nil)
	if out.String() != "No replicas have been created\n" {
		t.Errorf("empty replica list: %q", out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"pool", "create", "onlyname"},
		{"replica", "create", "tpool", "r1"},
		{"replica", "create", "tpool", "r1", "--size=ten"},
		{"replica", "share", "tpool", "r1", "--protocol", "iscsi"},
		{"pool", "list", "-o", "yaml"},
		{"pool", "list", "--bogus"},
	} {
		var stdout, stderr bytes.Buffer
		code := Run(t.Context(), append(args, "--engine", "127.0.0.1:1"), &stdout, &stderr)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
		if lines := bytes.Count(stderr.Bytes(), []byte("\n")); lines != 1 || !bytes.HasPrefix(stderr.Bytes(), []byte("kura: ")) {
			t.Errorf("%v: stderr %q, want one line starting with kura:", args, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Run(t.Context(), []string{"pool", "list", "--engine", "127.0.0.1:1"}, &stdout, &stderr); code != 1 {
		t.Errorf("unreachable engine: exit %d", code)
	}
	if !bytes.Contains(stderr.Bytes(), []byte("cannot reach the engine at 127.0.0.1:1")) {
		t.Errorf("unreachable engine: %q", stderr.String())
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"pool", "--help"}, {"replica", "create", "--help"}, {"up", "--help"}, {"engine", "--help"}} {
		var stdout, stderr bytes.Buffer
		if code := Run(t.Context(), args, &stdout, &stderr); code != 0 || stdout.Len() == 0 {
			t.Errorf("%v: exit %d, stdout %d bytes, stderr %q", args, code, stdout.Len(), stderr.String())
		}
	}
}
