package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	st, err := loadState(dir)
	if err != nil || len(st.Pools) != 0 {
		t.Fatalf("empty dir: %v %v", st, err)
	}
	want := persistedState{
		Version: stateVersion,
		Pools:   []poolRecord{{Name: "a", UUID: "u", Disk: "/dev/loop8"}},
		Bdevs:   []bdevRecord{{Name: "m0", URI: "malloc:///m0?size_mb=8"}},
		Shares:  []shareRecord{{Kind: "replica", Pool: "a", Name: "u2", Protocol: "nvmf", AllowedHosts: []string{"nqn.2014-08.org.nvmexpress:uuid:1"}}},
	}
	if err := saveState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// No temp files left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir holds %d entries, want just the state file", len(ents))
	}
}

func TestStateRejectsNewerVersion(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, stateFileName), []byte(`{"version": 99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(dir); err == nil {
		t.Fatal("newer state version accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, stateFileName), []byte(`{"version": 1, "pools": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(dir); err == nil {
		t.Fatal("truncated state accepted")
	}
}
