package engine

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	enginev1 "github.com/kura-io/kura/api/engine/v1"
	"github.com/kura-io/kura/internal/blockdev"
)

// bdevEntry is a block device opened by URI and kept open by the engine.
type bdevEntry struct {
	name string
	uri  string
	key  string
	dev  blockdev.Device
}

// bdevName derives a bdev name from its URI: the last path element
// (malloc:///m0 -> m0, aio:///dev/sdb -> sdb, nvmf://h:4420/nqn... -> the NQN).
func bdevName(uri string) (string, error) {
	u, err := blockdev.ParseURI(uri)
	if err != nil {
		return "", err
	}
	p := strings.TrimRight(u.Host+u.Path, "/")
	if p == "" {
		return "", fmt.Errorf("%w %q: cannot derive a name; give one", blockdev.ErrInvalidURI, uri)
	}
	return path.Base(p), nil
}

func (s *apiServer) CreateBdev(ctx context.Context, req *enginev1.CreateBdevRequest) (*enginev1.CreateBdevResponse, error) {
	s.e.opMu.Lock()
	defer s.e.opMu.Unlock()
	b, err := s.e.createBdevLocked(ctx, req.GetUri(), req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.e.save(); err != nil {
		return nil, err
	}
	return &enginev1.CreateBdevResponse{Bdev: s.e.bdevInfo(b)}, nil
}

// createBdevLocked opens uri as bdev name. Callers hold opMu and save.
func (e *Engine) createBdevLocked(ctx context.Context, uri, name string) (*bdevEntry, error) {
	if uri == "" {
		return nil, fmt.Errorf("%w: bdev URI is empty", ErrInvalidArgument)
	}
	if u, err := blockdev.ParseURI(uri); err != nil {
		return nil, err
	} else if u.Scheme == "bdev" || u.Scheme == "loopback" {
		return nil, fmt.Errorf("%w: %s:// names a device already open in this engine; it cannot be opened as a new bdev", ErrInvalidArgument, u.Scheme)
	}
	if name == "" {
		n, err := bdevName(uri)
		if err != nil {
			return nil, err
		}
		name = n
	}
	if err := checkName("bdev", name); err != nil {
		return nil, err
	}
	key, err := deviceKey(uri)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if b, ok := e.mu.bdevs[name]; ok {
		e.mu.Unlock()
		if b.uri == uri {
			return b, nil
		}
		return nil, fmt.Errorf("bdev %q %w (uri %s)", name, ErrExists, b.uri)
	}
	for _, pe := range e.mu.pools {
		if pe.p == nil {
			continue
		}
		if _, err := pe.p.Replica(name); err == nil {
			e.mu.Unlock()
			return nil, fmt.Errorf("%w: a replica in pool %q is named %q; give the bdev another name", ErrExists, pe.name, name)
		}
	}
	if err := e.claimLocked(key, fmt.Sprintf("bdev %q", name), uri); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	e.mu.Unlock()
	dev, err := e.reg.Open(ctx, uri)
	if err != nil {
		e.mu.Lock()
		delete(e.mu.claims, key)
		e.mu.Unlock()
		return nil, fmt.Errorf("open bdev %q: %w", uri, err)
	}
	b := &bdevEntry{name: name, uri: uri, key: key, dev: dev}
	e.mu.Lock()
	e.mu.bdevs[name] = b
	delete(e.mu.lostBdevs, name)
	e.mu.Unlock()
	e.log.Info("bdev created", "bdev", name, "uri", uri, "size", dev.Size())
	return b, nil
}

// bdevByNameOrURI finds a bdev.
func (e *Engine) bdevByNameOrURI(name string) (*bdevEntry, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: bdev name is empty", ErrInvalidArgument)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if b, ok := e.mu.bdevs[name]; ok {
		return b, nil
	}
	for _, b := range e.mu.bdevs {
		if b.uri == name {
			return b, nil
		}
	}
	return nil, fmt.Errorf("bdev %q %w", name, ErrNotFound)
}

func (s *apiServer) DestroyBdev(ctx context.Context, req *enginev1.DestroyBdevRequest) (*enginev1.DestroyBdevResponse, error) {
	e := s.e
	e.opMu.Lock()
	defer e.opMu.Unlock()
	b, err := e.bdevByNameOrURI(req.GetName())
	if err != nil {
		e.mu.Lock()
		_, lost := e.mu.lostBdevs[req.GetName()]
		delete(e.mu.lostBdevs, req.GetName())
		e.mu.Unlock()
		if lost {
			return &enginev1.DestroyBdevResponse{}, e.save()
		}
		return nil, err
	}
	e.mu.RLock()
	n := e.refsLocked(bdevRefKey(b.name))
	e.mu.RUnlock()
	if n > 0 {
		return nil, fmt.Errorf("bdev %q is %w (%d open handle(s), e.g. a nexus child)", b.name, ErrInUse, n)
	}
	if err := e.unshareLocked(ctx, "bdev", b.name); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err := b.dev.Close(); err != nil && !errors.Is(err, blockdev.ErrClosed) {
		e.log.Warn("close bdev", "bdev", b.name, "err", err)
	}
	e.mu.Lock()
	delete(e.mu.bdevs, b.name)
	delete(e.mu.claims, b.key)
	e.mu.Unlock()
	if err := e.save(); err != nil {
		return nil, err
	}
	e.log.Info("bdev destroyed", "bdev", b.name)
	return &enginev1.DestroyBdevResponse{}, nil
}

func (s *apiServer) ListBdevs(_ context.Context, req *enginev1.ListBdevsRequest) (*enginev1.ListBdevsResponse, error) {
	e := s.e
	e.mu.RLock()
	var list []*bdevEntry
	for _, b := range e.mu.bdevs {
		if req.GetName() == "" || req.GetName() == b.name || req.GetName() == b.uri {
			list = append(list, b)
		}
	}
	resp := &enginev1.ListBdevsResponse{}
	for _, l := range e.mu.lostBdevs {
		if req.GetName() == "" || req.GetName() == l.rec.Name || req.GetName() == l.rec.URI {
			resp.Bdevs = append(resp.Bdevs, &enginev1.Bdev{Name: l.rec.Name, Uri: l.rec.URI, ClaimedBy: "unavailable: " + l.err.Error()})
		}
	}
	e.mu.RUnlock()
	for _, b := range list {
		resp.Bdevs = append(resp.Bdevs, e.bdevInfo(b))
	}
	if req.GetName() != "" && len(resp.Bdevs) == 0 {
		return nil, fmt.Errorf("bdev %q %w", req.GetName(), ErrNotFound)
	}
	slices.SortFunc(resp.Bdevs, func(a, b *enginev1.Bdev) int { return cmpStr(a.Name, b.Name) })
	return resp, nil
}

func (s *apiServer) ShareBdev(ctx context.Context, req *enginev1.ShareBdevRequest) (*enginev1.ShareBdevResponse, error) {
	e := s.e
	if err := checkShareOptions(req.GetOptions()); err != nil {
		return nil, err
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	b, err := e.bdevByNameOrURI(req.GetName())
	if err != nil {
		return nil, err
	}
	if _, err := e.shareLocked(ctx, shareRecordFor("bdev", "", b.name, req.GetOptions())); err != nil {
		return nil, err
	}
	if err := e.save(); err != nil {
		return nil, err
	}
	return &enginev1.ShareBdevResponse{Bdev: e.bdevInfo(b)}, nil
}

func (s *apiServer) UnshareBdev(ctx context.Context, req *enginev1.UnshareBdevRequest) (*enginev1.UnshareBdevResponse, error) {
	e := s.e
	e.opMu.Lock()
	defer e.opMu.Unlock()
	b, err := e.bdevByNameOrURI(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := e.unshareLocked(ctx, "bdev", b.name); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err := e.save(); err != nil {
		return nil, err
	}
	return &enginev1.UnshareBdevResponse{Bdev: e.bdevInfo(b)}, nil
}

func (e *Engine) bdevInfo(b *bdevEntry) *enginev1.Bdev {
	out := &enginev1.Bdev{
		Name:      b.name,
		Uri:       b.uri,
		Size:      uint64(b.dev.Size()),
		BlockSize: uint32(b.dev.BlockSize()),
		Share:     e.shareInfo("bdev", b.name),
	}
	e.mu.RLock()
	if n := e.refsLocked(bdevRefKey(b.name)); n > 0 {
		out.ClaimedBy = fmt.Sprintf("%d open handle(s)", n)
	}
	e.mu.RUnlock()
	return out
}
