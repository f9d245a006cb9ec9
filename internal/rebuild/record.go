package rebuild

import (
	"sync"
	"time"
)

// Kind tells a full rebuild from a partial one.
type Kind string

// Rebuild kinds.
const (
	Full    Kind = "full"
	Partial Kind = "partial"
)

// Record describes one finished job.
type Record struct {
	Child  string // destination URI
	Source string // source URI at start
	Kind   Kind
	State  State // Completed, Failed or Stopped
	Start  time.Time
	End    time.Time
	Stats  Stats
	Err    string
}

// History keeps the last N records. Safe for concurrent use.
type History struct {
	mu   sync.Mutex // guards recs
	max  int
	recs []Record
}

// NewHistory keeps up to max records (default 64).
func NewHistory(max int) *History {
	if max <= 0 {
		max = 64
	}
	return &History{max: max}
}

// Add appends r, dropping the oldest record when full.
func (h *History) Add(r Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.recs) == h.max {
		h.recs = append(h.recs[:0], h.recs[1:]...)
	}
	h.recs = append(h.recs, r)
}

// Records returns a copy, oldest first.
func (h *History) Records() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Record(nil), h.recs...)
}
