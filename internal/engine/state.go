package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// stateFileName is the engine's persistent state inside the data directory.
const stateFileName = "engine-state.json"

// stateVersion is the format version of the state file. It only ratchets up;
// an engine refuses a state file newer than it understands.
const stateVersion = 1

// maxStateSize bounds the state file we are willing to decode.
const maxStateSize = 64 << 20

// persistedState is what the engine re-creates after a restart.
type persistedState struct {
	Version int            `json:"version"`
	Pools   []poolRecord   `json:"pools"`
	Bdevs   []bdevRecord   `json:"bdevs"`
	Shares  []shareRecord  `json:"shares"`
	Nexuses []nexusRecord  `json:"nexuses,omitempty"`
	Extra   map[string]any `json:"extra,omitempty"`
}

// poolRecord names a pool to import on start, by its disk.
type poolRecord struct {
	Name string `json:"name"`
	UUID string `json:"uuid"`
	Disk string `json:"disk"`
}

// bdevRecord is a bdev to reopen on start.
type bdevRecord struct {
	Name string `json:"name"`
	URI  string `json:"uri"`
}

// shareRecord is an export to re-create on start.
type shareRecord struct {
	// Kind is "replica", "bdev" or "nexus".
	Kind string `json:"kind"`
	// Pool is set for replicas.
	Pool string `json:"pool,omitempty"`
	// Name is the replica UUID, bdev name or nexus name.
	Name         string   `json:"name"`
	Protocol     string   `json:"protocol"`
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
	AllowAnyHost bool     `json:"allow_any_host,omitempty"`
}

// nexusRecord is a nexus to re-create on start.
type nexusRecord struct {
	Name     string   `json:"name"`
	UUID     string   `json:"uuid"`
	Size     int64    `json:"size"`
	Children []string `json:"children"`
	// WriteIntent enables the nexus write-intent log.
	WriteIntent bool `json:"write_intent,omitempty"`
	// Shutdown is set by ShutdownNexus; such a nexus is not persisted.
	Shutdown bool `json:"-"`
}

// lockDataDir takes an exclusive, non-blocking lock on dir/engine.lock so
// that two engines never share a data directory. The kernel drops the lock
// when the process dies.
func lockDataDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, "engine.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is %w by another engine (%s is locked)", dir, ErrInUse, path)
		}
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return func() { f.Close() }, nil
}

// loadState reads the state file; a missing file is an empty state.
func loadState(dir string) (persistedState, error) {
	var st persistedState
	path := filepath.Join(dir, stateFileName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return persistedState{Version: stateVersion}, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	if fi.Size() > maxStateSize {
		return st, fmt.Errorf("state file %s is %d bytes, more than the %d allowed", path, fi.Size(), maxStateSize)
	}
	dec := json.NewDecoder(f)
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("decode state file %s: %w", path, err)
	}
	if st.Version > stateVersion {
		return st, fmt.Errorf("state file %s has version %d, this engine understands up to %d", path, st.Version, stateVersion)
	}
	st.Version = stateVersion
	return st, nil
}

// saveState writes the state file atomically: temp file, fsync, rename,
// fsync of the directory. A crash leaves either the old or the new file.
func saveState(dir string, st persistedState) error {
	st.Version = stateVersion
	sortState(&st)
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	b = append(b, '\n')
	return writeFileAtomic(filepath.Join(dir, stateFileName), b, 0o600)
}

func sortState(st *persistedState) {
	slices.SortFunc(st.Pools, func(a, b poolRecord) int { return cmpStr(a.Name, b.Name) })
	slices.SortFunc(st.Bdevs, func(a, b bdevRecord) int { return cmpStr(a.Name, b.Name) })
	slices.SortFunc(st.Shares, func(a, b shareRecord) int {
		if c := cmpStr(a.Kind, b.Kind); c != 0 {
			return c
		}
		return cmpStr(a.Name, b.Name)
	})
	slices.SortFunc(st.Nexuses, func(a, b nexusRecord) int { return cmpStr(a.Name, b.Name) })
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// writeFileAtomic replaces path with data so that a crash at any point
// leaves either the old or the new content.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: open dir: %w", path, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync dir: %w", path, err)
	}
	return nil
}
