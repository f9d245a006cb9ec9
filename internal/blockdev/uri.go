package blockdev

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// OpenFunc opens a device for a parsed URI. It must reject unknown query
// parameters (use Params).
type OpenFunc func(ctx context.Context, u *url.URL) (Device, error)

// Registry maps URI schemes to openers. The engine registers bdev://,
// loopback:// and nvmf:// on top of the built-in schemes.
type Registry struct {
	mu      sync.RWMutex // guards openers
	openers map[string]OpenFunc
}

// NewRegistry returns a registry with the built-in local schemes
// (aio, uring, malloc).
func NewRegistry() *Registry {
	r := &Registry{openers: map[string]OpenFunc{}}
	registerBuiltins(r)
	return r
}

// Register adds or replaces the opener for scheme.
func (r *Registry) Register(scheme string, f OpenFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.openers[scheme] = f
}

// Schemes lists the registered schemes, sorted.
func (r *Registry) Schemes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.openers))
	for s := range r.openers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Open parses uri and opens the device it names.
func (r *Registry) Open(ctx context.Context, uri string) (Device, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	scheme := u.Scheme
	if strings.HasPrefix(uri, "/") {
		scheme = BareScheme()
	}
	r.mu.RLock()
	f, ok := r.openers[scheme]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q in %q (known: %s)", ErrUnknownScheme, u.Scheme, uri, strings.Join(r.Schemes(), ", "))
	}
	return f(ctx, u)
}

// ParseURI parses a device URI. A bare absolute path parses as aio://;
// Registry.Open opens it with BareScheme (io_uring where available).
func ParseURI(uri string) (*url.URL, error) {
	if uri == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidURI)
	}
	if strings.HasPrefix(uri, "/") {
		return &url.URL{Scheme: "aio", Path: uri}, nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidURI, uri, err)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("%w %q: no scheme (want e.g. aio:///path, malloc:///name?size_mb=64, or an absolute path)", ErrInvalidURI, uri)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	return u, nil
}

// Params reads query parameters and remembers which were used, so openers
// can reject unknown ones with Done.
type Params struct {
	u    *url.URL
	q    url.Values
	used map[string]bool
	err  error
}

// NewParams wraps the query of u.
func NewParams(u *url.URL) *Params {
	return &Params{u: u, q: u.Query(), used: map[string]bool{}}
}

// String returns the parameter value, or def when absent.
func (p *Params) String(key, def string) string {
	p.used[key] = true
	vs, ok := p.q[key]
	if !ok {
		return def
	}
	if len(vs) != 1 {
		p.fail(fmt.Errorf("%w %q: parameter %q given %d times", ErrInvalidURI, p.u.Redacted(), key, len(vs)))
		return def
	}
	return vs[0]
}

// Int returns an integer parameter in [min, max], or def when absent.
func (p *Params) Int(key string, def, min, max int64) int64 {
	s := p.String(key, "")
	if s == "" {
		if _, present := p.q[key]; present {
			p.fail(fmt.Errorf("%w %q: parameter %q is empty", ErrInvalidURI, p.u.Redacted(), key))
		}
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < min || v > max {
		p.fail(fmt.Errorf("%w %q: parameter %s=%q must be an integer in [%d, %d]", ErrInvalidURI, p.u.Redacted(), key, s, min, max))
		return def
	}
	return v
}

// BlockSize reads blk_size (512 or 4096); def is returned when it is absent.
func (p *Params) BlockSize(def int) int {
	_, present := p.q["blk_size"]
	v := p.Int("blk_size", int64(def), 512, 4096)
	if present && v != 512 && v != 4096 {
		p.fail(fmt.Errorf("%w %q: blk_size must be 512 or 4096, got %d", ErrInvalidURI, p.u.Redacted(), v))
		return def
	}
	return int(v)
}

func (p *Params) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// Done returns the first error seen, or an error naming unknown parameters.
func (p *Params) Done() error {
	if p.err != nil {
		return p.err
	}
	var unknown []string
	for k := range p.q {
		if !p.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("%w %q: unknown parameter(s) %s", ErrInvalidURI, p.u.Redacted(), strings.Join(unknown, ", "))
	}
	return nil
}
