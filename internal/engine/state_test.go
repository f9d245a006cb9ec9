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

func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDataDir(dir); err == nil {
		t.Fatal("second lock of a data directory succeeded")
	}
	unlock()
	unlock2, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
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

// FuzzLoadState: any state file either fails to load with an error or
// loads into a state that saves and loads back identically.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"version":1,"pools":[{"name":"p","uuid":"u","disk":"/dev/loop8"}],"bdevs":null,"shares":[{"kind":"replica","pool":"p","name":"u2","protocol":"nbd","allowed_hosts":["10.0.0.0/8"]}]}`))
	f.Add([]byte(`{"version":1,"nexuses":[{"name":"n","uuid":"n","size":4096,"children":["bdev:///r1"]}]}`))
	f.Add([]byte(`{"version": 2}`))
	f.Add([]byte(`{`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, stateFileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := loadState(dir)
		if err != nil {
			return
		}
		if err := saveState(dir, st); err != nil {
			t.Fatal(err)
		}
		st2, err := loadState(dir)
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		sortState(&st)
		if !reflect.DeepEqual(normState(st), normState(st2)) {
			t.Fatalf("round trip:\n%+v\n%+v", st, st2)
		}
	})
}

// normState treats nil and empty slices alike.
func normState(st persistedState) persistedState {
	if len(st.Pools) == 0 {
		st.Pools = nil
	}
	if len(st.Bdevs) == 0 {
		st.Bdevs = nil
	}
	if len(st.Shares) == 0 {
		st.Shares = nil
	}
	if len(st.Nexuses) == 0 {
		st.Nexuses = nil
	}
	if len(st.Extra) == 0 {
		st.Extra = nil
	}
	for i := range st.Shares {
		if len(st.Shares[i].AllowedHosts) == 0 {
			st.Shares[i].AllowedHosts = nil
		}
	}
	for i := range st.Nexuses {
		if len(st.Nexuses[i].Children) == 0 {
			st.Nexuses[i].Children = nil
		}
	}
	return st
}
