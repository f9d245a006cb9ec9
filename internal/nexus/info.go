package nexus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Info is the persisted NexusInfo: whether the nexus was shut down cleanly
// and which children hold up-to-date data. A child recorded unhealthy is
// never served after a restart until it has been rebuilt.
type Info struct {
	CleanShutdown bool        `json:"clean_shutdown"`
	Children      []ChildInfo `json:"children"`
}

// ChildInfo is one child's persisted health.
type ChildInfo struct {
	URI     string `json:"uri"`
	UUID    string `json:"uuid,omitempty"`
	Healthy bool   `json:"healthy"`
	// OutOfSync marks a child added without a rebuild that has not been
	// rebuilt yet: it never held the nexus' data (Healthy is false too).
	// After a restart it comes back out of sync, waiting for StartRebuild.
	OutOfSync bool `json:"out_of_sync,omitempty"`
}

// InfoStore persists Info per nexus UUID. The nexus calls Store before
// acknowledging any I/O that a faulted child missed. Implementations must
// be safe for concurrent use and make Store durable before returning.
type InfoStore interface {
	// Load returns the stored Info, or an error wrapping ErrNoInfo.
	Load(ctx context.Context, nexusUUID string) (Info, error)
	Store(ctx context.Context, nexusUUID string, info Info) error
}

// FileStore keeps one JSON file per nexus in a directory, replaced
// atomically (temp file, fsync, rename, fsync directory).
type FileStore struct {
	dir string
	mu  sync.Mutex // serializes writers of the same directory
}

// NewFileStore returns a store in dir, creating it.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("nexus: info store: %w", err)
	}
	return &FileStore{dir: dir}, nil
}

func (s *FileStore) path(id string) string {
	return filepath.Join(s.dir, "nexus-"+filepath.Base(id)+".json")
}

// Load reads the Info of nexusUUID.
func (s *FileStore) Load(_ context.Context, id string) (Info, error) {
	b, err := os.ReadFile(s.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%w: %s", ErrNoInfo, id)
	}
	if err != nil {
		return Info{}, fmt.Errorf("nexus: load info: %w", err)
	}
	var in Info
	if err := json.Unmarshal(b, &in); err != nil {
		return Info{}, fmt.Errorf("nexus: decode info %s: %w", s.path(id), err)
	}
	return in, nil
}

// Store durably replaces the Info of nexusUUID.
func (s *FileStore) Store(_ context.Context, id string, in Info) error {
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tmp, err := os.CreateTemp(s.dir, ".nexus-*.tmp")
	if err != nil {
		return fmt.Errorf("nexus: store info: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path(id))
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(s.dir); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("nexus: store info: %w", err)
	}
	return nil
}

// MemStore is an in-memory InfoStore (tests, and nexuses without
// persistence).
type MemStore struct {
	mu sync.Mutex // guards m
	m  map[string]Info
	// Fail, when set, makes Store return it (fault injection in tests).
	Fail error
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{m: map[string]Info{}} }

// Load returns the stored Info.
func (s *MemStore) Load(_ context.Context, id string) (Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.m[id]
	if !ok {
		return Info{}, fmt.Errorf("%w: %s", ErrNoInfo, id)
	}
	in.Children = append([]ChildInfo(nil), in.Children...)
	return in, nil
}

// Store replaces the Info.
func (s *MemStore) Store(_ context.Context, id string, in Info) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	in.Children = append([]ChildInfo(nil), in.Children...)
	s.m[id] = in
	return nil
}
