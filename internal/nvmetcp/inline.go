package nvmetcp

import (
	"time"

	"golang.org/x/sys/unix"
)

// Inline execution. A command that is alone in flight with nothing else
// buffered runs on the reader (no goroutine hand-off: lowest latency at
// queue depth 1). "Nothing else buffered" does not make a host queue
// depth 1, though: a large write's data (H2CData or in-capsule) is read
// straight into the slot, leaving the buffer empty while the host has more
// commands on the way, so those would run one after the other. The reader
// keeps evidence of pipelining (pipelined) and stops running commands of
// a slow device inline above pipeLimit; on a fast one (inline execution
// below fastInlineNs, e.g. malloc) inline always wins.
const (
	// fastInlineNs: below this moving average an inline command costs
	// less than a hand-off.
	fastInlineNs = 15_000
	// pipeScale is the fixed-point scale of inlineState.pipelined;
	// pipeLimit (a quarter) is where slow commands stop running inline.
	pipeScale = 256
	pipeLimit = pipeScale / 4
)

// inlineState is the reader's view of the host's pipelining (reader only).
type inlineState struct {
	ewmaNs    int64 // moving average of inline execution time
	pipelined int64 // moving average of pipelining evidence, times pipeScale
	inq       int   // result of inqFn
	inqFn     func(fd uintptr)
}

// note folds one observation into pipelined: a command that arrived while
// others were in flight, or the next one already waiting when an inline
// command finished.
func (st *inlineState) note(ahead bool) {
	var x int64
	if ahead {
		x = pipeScale
	}
	st.pipelined += (x - st.pipelined) / 8
}

// inlineOK reports whether s (counted in inflight, data arrived) should
// run on the reader, and records whether others are in flight.
func (q *queue) inlineOK() bool {
	n := q.inflight.Load()
	q.il.note(n > 1)
	return n == 1 && q.br.Buffered() == 0 && (q.il.ewmaNs < fastInlineNs || q.il.pipelined < pipeLimit)
}

// execInline runs s on the reader and, when that was slow, checks whether
// the host sent more meanwhile (it cannot have at queue depth 1).
func (q *queue) execInline(s *slot) {
	start := time.Now()
	q.exec(s)
	d := int64(time.Since(start))
	q.il.ewmaNs += (d - q.il.ewmaNs) / 8
	if d >= fastInlineNs {
		q.il.note(q.br.Buffered() > 0 || q.socketQueued())
	}
}

func (st *inlineState) inqCb(fd uintptr) {
	if n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
		st.inq = n
	}
}
