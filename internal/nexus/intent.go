package nexus

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/rebuild"
)

// Write intent (Config.WriteIntent): while every child is healthy, the
// segments with writes in flight are recorded in a rotating, generation-
// numbered dirty log. After an unclean shutdown the children that are not
// trusted (only one recorded-healthy child is served) need only those
// segments copied, not a full rebuild.
//
// A generation is retired by a rotation: a new empty log becomes current,
// the old one waits until no write that marked it is in flight, all
// children are flushed, and then its file is deleted. Each file is only
// ever 0→1, like the per-child logs.

// intentGen is one generation of the write-intent log.
type intentGen struct {
	log      *rebuild.DirtyLog
	inflight atomic.Int64 // writes that marked this generation and are not done
	retired  atomic.Bool  // no longer current: new writes must not use it
}

// intent is the write-intent state of a nexus.
type intent struct {
	dir, uuid     string
	segSize, nseg int64
	seq           uint64 // last generation number; touched by New and the rotator only
	cur           atomic.Pointer[intentGen]
	old           []*intentGen // retired, not yet removed (rotator only)
}

func intentPath(dir, uuid string, seq uint64) string {
	return filepath.Join(dir, fmt.Sprintf("nexus-%s-intent-%d.dlog", filepath.Base(uuid), seq))
}

// loadIntent reads the intent logs a previous run left, returning the
// union of their segments (nil when there are none or one is unusable:
// then the caller must assume any segment may differ) and the highest
// generation number seen. The files are left in place.
func loadIntent(dir, uuid string, segSize, nseg int64) (union *rebuild.Bitmap, files []string, seq uint64, err error) {
	files, _ = filepath.Glob(filepath.Join(dir, "nexus-"+filepath.Base(uuid)+"-intent-*.dlog"))
	if len(files) == 0 {
		return nil, nil, 0, nil
	}
	union = rebuild.NewBitmap(nseg)
	for _, f := range files {
		base := strings.TrimSuffix(f[strings.LastIndex(f, "-intent-")+len("-intent-"):], ".dlog")
		if v, perr := strconv.ParseUint(base, 10, 64); perr == nil && v > seq {
			seq = v
		}
		l, _, oerr := rebuild.OpenLog(f, segSize, nseg)
		if oerr != nil {
			err = oerr
			continue
		}
		union.Or(l.Bitmap())
		l.Close()
	}
	if err != nil {
		return nil, files, seq, err
	}
	return union, files, seq, nil
}

// newIntent starts generation seq+1.
func newIntent(dir, uuid string, segSize, nseg int64, seq uint64) (*intent, error) {
	it := &intent{dir: dir, uuid: uuid, segSize: segSize, nseg: nseg, seq: seq}
	g, err := it.newGen()
	if err != nil {
		return nil, err
	}
	it.cur.Store(g)
	return it, nil
}

func (it *intent) newGen() (*intentGen, error) {
	it.seq++
	l, _, err := rebuild.OpenLog(intentPath(it.dir, it.uuid, it.seq), it.segSize, it.nseg)
	if err != nil {
		return nil, err
	}
	return &intentGen{log: l}, nil
}

// begin records the intent to write [off, off+length) durably and returns
// the generation; call end on it once the children completed the write.
func (it *intent) begin(off, length int64) (*intentGen, error) {
	for {
		g := it.cur.Load()
		g.inflight.Add(1)
		if g.retired.Load() { // rotated meanwhile: use the new generation
			g.inflight.Add(-1)
			continue
		}
		if err := g.log.Mark(off, length); err != nil {
			g.inflight.Add(-1)
			return nil, err
		}
		return g, nil
	}
}

func (g *intentGen) end() { g.inflight.Add(-1) }

// intentLoop rotates the write-intent log every interval until stop.
func (n *Nexus) intentLoop(stop <-chan struct{}, interval time.Duration) {
	defer n.wdDone.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		n.rotateIntent(stop)
	}
}

// rotateIntent retires the current generation if it holds anything and
// removes retired generations whose writes are done and flushed.
func (n *Nexus) rotateIntent(stop <-chan struct{}) {
	it := n.intent
	if cur := it.cur.Load(); cur.log.Count() > 0 {
		g, err := it.newGen()
		if err != nil {
			n.log.Warn("write intent: cannot start a new generation", "err", err)
			return
		}
		it.cur.Store(g)
		cur.retired.Store(true)
		it.old = append(it.old, cur)
	}
	if len(it.old) == 0 {
		return
	}
	for _, g := range it.old {
		for g.inflight.Load() > 0 { // bounded by the child timeout
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
	if err := n.Flush(); err != nil {
		return // keep the generations; retry next time
	}
	for _, g := range it.old {
		if err := g.log.Remove(); err != nil {
			n.log.Warn("write intent: removing a generation", "err", err)
		}
	}
	it.old = it.old[:0]
}

// closeAll closes the logs, keeping the files (unclean stop).
func (it *intent) closeAll() {
	for _, g := range it.old {
		g.log.Close()
	}
	it.cur.Load().log.Close()
}

// removeAll deletes every intent log (clean shutdown, after the final
// flush and the clean-shutdown record).
func (it *intent) removeAll() {
	for _, g := range it.old {
		g.log.Remove()
	}
	it.old = nil
	it.cur.Load().log.Remove()
}

// removeFiles deletes intent files of a previous run.
func removeFiles(files []string) {
	for _, f := range files {
		os.Remove(f)
	}
}
