package pool

import (
	"bytes"
	"fmt"
)

// batch is a group of records committed with one journal write and one
// device flush (group commit).
type batch struct {
	buf     []byte // encoded records
	barrier bool   // flush the device before writing the records
	ckpt    bool   // write a checkpoint instead of a journal entry
	waiters int
	done    chan struct{}
	err     error
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

// commitState is the committer's state, guarded by Pool.cm.
type commitState struct {
	cur  *batch
	busy bool // a leader is running; only the leader touches gen/pos
	// failed is sticky: once a metadata write fails the in-memory state
	// is ahead of the disk and the pool must be re-imported.
	failed error
}

// logLocked applies an encoded record to the state and queues it for the
// journal. The caller holds p.mu. barrier requests a device flush before
// the record is written (data it depends on must be durable first).
func (p *Pool) logLocked(r []byte, barrier bool) (*batch, error) {
	if err := p.st.applyAll(r); err != nil {
		// Live callers build only valid records: this is a bug.
		err = fmt.Errorf("pool %s: internal metadata error: %w", p.label.Name, err)
		p.cm.Lock()
		if p.cmt.failed == nil {
			p.cmt.failed = err
		}
		p.cm.Unlock()
		return nil, err
	}
	p.cm.Lock()
	b := p.cmt.cur
	b.buf = append(b.buf, r...)
	b.barrier = b.barrier || barrier
	p.cm.Unlock()
	return b, nil
}

// sync waits until batch b (the current batch if nil) is durable; the
// first waiter becomes the leader and writes batches until none has a
// waiter. ckpt asks for a checkpoint (journal reset).
func (p *Pool) syncBatch(b *batch, ckpt bool) error {
	p.cm.Lock()
	if b == nil {
		b = p.cmt.cur
	}
	b.waiters++
	b.ckpt = b.ckpt || ckpt
	lead := !p.cmt.busy
	if lead {
		p.cmt.busy = true
	}
	p.cm.Unlock()
	if lead {
		p.lead()
	}
	<-b.done
	return b.err
}

func (p *Pool) sync(b *batch) error { return p.syncBatch(b, false) }

func (p *Pool) lead() {
	for {
		p.cm.Lock()
		b := p.cmt.cur
		if b.waiters == 0 {
			p.cmt.busy = false
			p.cm.Unlock()
			return
		}
		nb := (int64(jrnlHdrLen+len(b.buf)) + labelSize - 1) / labelSize
		fits := !b.ckpt && int64(p.pos)+nb <= p.label.JournalSize/labelSize
		if fits {
			p.cmt.cur = newBatch()
			p.cm.Unlock()
			p.finish(b, p.writeBatch(b, nb))
			continue
		}
		p.cm.Unlock()
		// Checkpoint: capture the state and swap the batch atomically
		// (p.mu, then cm), so the checkpoint holds exactly the records
		// of every batch up to and including b.
		p.mu.Lock()
		p.cm.Lock()
		b = p.cmt.cur
		p.cmt.cur = newBatch()
		p.cm.Unlock()
		payload := encodeState(p.st)
		p.mu.Unlock()
		p.finish(b, p.writeCheckpoint(payload))
	}
}

func (p *Pool) finish(b *batch, err error) {
	p.cm.Lock()
	if err != nil && p.cmt.failed == nil {
		p.cmt.failed = fmt.Errorf("pool %s: metadata write failed, re-import required: %w", p.label.Name, err)
	}
	b.err = p.cmt.failed
	p.cm.Unlock()
	close(b.done)
}

func (p *Pool) failedErr() error {
	p.cm.Lock()
	defer p.cm.Unlock()
	return p.cmt.failed
}

// writeBatch appends b to the journal at p.pos and flushes.
func (p *Pool) writeBatch(b *batch, nb int64) error {
	if err := p.failedErr(); err != nil {
		return err
	}
	if len(b.buf) == 0 {
		return p.dev.Flush()
	}
	if b.barrier {
		if err := p.dev.Flush(); err != nil {
			return err
		}
	}
	buf := make([]byte, nb*labelSize)
	e := enc{b: buf[:0]}
	e.bytes([]byte(jrnlMagic))
	e.u32(formatVersion)
	e.bytes(p.uuid[:])
	e.u64(p.gen)
	e.u32(p.pos)
	e.u32(uint32(nb))
	e.u32(uint32(len(b.buf)))
	copy(buf[jrnlHdrLen:], b.buf)
	e.u32(crc(buf[:44]) ^ crc(b.buf))
	if _, err := p.dev.WriteAt(buf, p.label.JournalOff+int64(p.pos)*labelSize); err != nil {
		return err
	}
	if err := p.dev.Flush(); err != nil {
		return err
	}
	p.pos += uint32(nb)
	return nil
}

// writeCheckpoint writes payload as generation gen+1 into the other slot,
// flushes, and restarts the journal.
func (p *Pool) writeCheckpoint(payload []byte) error {
	if err := p.failedErr(); err != nil {
		return err
	}
	gen := p.gen + 1
	b := encodeSlot(p.uuid, gen, payload)
	if int64(len(b)) > p.label.SlotSize {
		return fmt.Errorf("checkpoint of %d bytes exceeds slot of %d", len(b), p.label.SlotSize)
	}
	if err := p.dev.Flush(); err != nil {
		return err
	}
	if _, err := p.dev.WriteAt(b, p.slotOff(gen)); err != nil {
		return err
	}
	if err := p.dev.Flush(); err != nil {
		return err
	}
	p.gen, p.pos = gen, 0
	return nil
}

func (p *Pool) slotOff(gen uint64) int64 { return p.label.SlotOffset + int64(gen%2)*p.label.SlotSize }

// load reads the newest valid checkpoint and replays the journal on top
// of it, without changing anything on disk. It returns the state and
// records the generation and journal position in p.gen/p.pos only when
// called through importState.
func (p *Pool) load() (*state, error) {
	s, _, _, err := loadState(p.dev, &p.label)
	return s, err
}

func loadState(dev interface {
	ReadAt([]byte, int64) (int, error)
}, l *Label) (*state, uint64, uint32, error) {
	u := mustUUID(l.UUID)
	var best []byte
	var bestGen uint64
	var firstErr error
	for slot := int64(0); slot < 2; slot++ {
		off := l.SlotOffset + slot*l.SlotSize
		hdr := make([]byte, labelSize)
		if _, err := dev.ReadAt(hdr, off); err != nil {
			return nil, 0, 0, fmt.Errorf("pool: read checkpoint: %w", err)
		}
		gen, n, err := decodeSlotHeader(u, hdr, l.SlotSize)
		if err == nil && int64(gen%2) != slot {
			err = corrupt("checkpoint generation %d in slot %d", gen, slot)
		}
		if err != nil || (best != nil && gen <= bestGen) {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		full := make([]byte, alignUp(ckptHdrLen+n, labelSize))
		if _, err := dev.ReadAt(full, off); err != nil {
			return nil, 0, 0, fmt.Errorf("pool: read checkpoint: %w", err)
		}
		payload, err := checkSlot(full, n)
		if err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		best, bestGen = payload, gen
	}
	if best == nil {
		return nil, 0, 0, fmt.Errorf("no valid checkpoint: %w", firstErr)
	}
	s, err := decodeState(l, best)
	if err != nil {
		return nil, 0, 0, err
	}
	pos, err := replay(dev, l, u[:], bestGen, s)
	if err != nil {
		return nil, 0, 0, err
	}
	return s, bestGen, pos, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// replay applies journal batches of generation gen from block 0 until the
// first block that is not the next valid batch. It returns the next free
// journal block.
func replay(dev interface {
	ReadAt([]byte, int64) (int, error)
}, l *Label, u []byte, gen uint64, s *state) (uint32, error) {
	total := uint32(l.JournalSize / labelSize)
	hdr := make([]byte, labelSize)
	pos := uint32(0)
	for pos < total {
		if _, err := dev.ReadAt(hdr, l.JournalOff+int64(pos)*labelSize); err != nil {
			return 0, fmt.Errorf("pool: read journal: %w", err)
		}
		if !bytes.Equal(hdr[:4], []byte(jrnlMagic)) {
			break
		}
		d := dec{b: hdr[4:jrnlHdrLen]}
		ver, id, g, p, nb, n, c := d.u32(), d.take(16), d.u64(), d.u32(), d.u32(), d.u32(), d.u32()
		if ver != formatVersion || !bytes.Equal(id, u) || g != gen || p != pos || nb == 0 || nb > total-pos ||
			int64(n) > int64(nb)*labelSize-jrnlHdrLen {
			break
		}
		buf := hdr
		if nb > 1 {
			buf = make([]byte, int64(nb)*labelSize)
			if _, err := dev.ReadAt(buf, l.JournalOff+int64(pos)*labelSize); err != nil {
				return 0, fmt.Errorf("pool: read journal: %w", err)
			}
		}
		recs := buf[jrnlHdrLen : jrnlHdrLen+n]
		if crc(buf[:44])^crc(recs) != c {
			break // torn or never completed: not acknowledged
		}
		if err := s.applyAll(recs); err != nil {
			return 0, fmt.Errorf("journal block %d: %w", pos, err)
		}
		pos += nb
	}
	return pos, nil
}
