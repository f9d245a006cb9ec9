package nvmetcp

import "github.com/kura-io/kura/internal/nvme"

// complete sends the command's data (if any) and its response capsule, then
// frees the slot. The last of several concurrent completers flushes, so a
// burst of completions leaves in one write.
func (q *queue) complete(s *slot) {
	q.out.mu.Lock()
	q.writeCompletion(s)
	q.flushLocked()
	q.out.mu.Unlock()
	q.release(s)
	q.inflight.Add(-1)
}

// writeCompletion appends s's data (if any) and response capsule to the
// queue's writer and advances the SQ head. Caller holds out.mu.
func (q *queue) writeCompletion(s *slot) {
	if q.werr == nil {
		var err error
		// With SQ flow control disabled, a successful read ends with
		// C2HData LAST_PDU|SUCCESS and no response capsule (§3.6.2.8).
		success := q.sqflowOff && s.status.OK() && s.c2h > 0
		if s.status.OK() && s.c2h > 0 {
			err = q.enc.WriteC2HData(s.sqe.CID, 0, s.buf[:s.c2h], true, success)
		}
		if q.sqflowOff {
			q.sqhd = 0xFFFF
		} else if q.sqsize > 0 {
			q.sqhd = (q.sqhd + 1) % (q.sqsize + 1)
		} else {
			q.sqhd++
		}
		cqe := nvme.CQE{DW0: s.dw0, DW1: s.dw1, SQHD: q.sqhd, SQID: q.qid, CID: s.sqe.CID, Status: s.status}
		if err == nil && !success {
			err = q.enc.WriteCapsuleResp(&cqe)
		}
		if err != nil {
			q.werr = err
			q.shutdown()
		}
	}
}

// flushLocked writes out what writeCompletion appended. Caller holds out.mu.
func (q *queue) flushLocked() {
	if q.werr == nil {
		if err := q.enc.Flush(); err != nil {
			q.werr = err
			q.shutdown()
		}
	}
}
