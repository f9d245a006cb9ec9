package nexus

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"time"

	"github.com/kura-io/kura/internal/rebuild"
)

// child is the nexus' record of one child URI; it outlives the device
// instances opened for it. All fields are guarded by Nexus.mu.
type child struct {
	uri    string
	state  ChildState
	reason string
	since  time.Time

	inst *instance // open device; nil unless Open or Rebuilding
	// old holds closed instances whose hung I/O has not returned yet.
	old []*instance

	// log records writes missed while Faulted/Offline, and is the segment
	// list of a partial rebuild. Nil: the next rebuild is full.
	log *rebuild.DirtyLog

	job       *rebuild.Job // running rebuild, if Rebuilding
	jobKind   rebuild.Kind
	jobSource string
}

// ChildStatus is a snapshot of one child for listings.
type ChildStatus struct {
	URI    string
	State  ChildState
	Reason string // why it is Faulted/Offline
	Since  time.Time
	// RebuildProgress is the running rebuild's progress in percent (0 when
	// none is running).
	RebuildProgress float64
	// DirtySegments counts segments logged while the child was away.
	DirtySegments int64
}

func (c *child) status() ChildStatus {
	s := ChildStatus{URI: c.uri, State: c.state, Reason: c.reason, Since: c.since}
	if c.job != nil {
		s.RebuildProgress = c.job.Progress().Percent
	}
	if c.log != nil {
		s.DirtySegments = c.log.Count()
	}
	return s
}

// busyOld drops drained old instances and reports whether any is still
// executing I/O.
func (c *child) busyOld() bool {
	keep := c.old[:0]
	for _, in := range c.old {
		if in.busy() {
			keep = append(keep, in)
		}
	}
	c.old = keep
	return len(keep) > 0
}

// logPath names the dirty log of uri for nexus id in dir.
func logPath(dir, id, uri string) string {
	if dir == "" {
		return ""
	}
	h := sha256.Sum256([]byte(uri))
	return filepath.Join(dir, "nexus-"+filepath.Base(id)+"-"+hex.EncodeToString(h[:8])+".dlog")
}
