package nexus

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
)

// inlineSlots bounds the I/Os one instance can run inline at once; more
// go to the workers.
const inlineSlots = 128

// clockBase anchors monotonic timestamps; now() is never 0.
var clockBase = time.Now()

func now() int64 { return int64(time.Since(clockBase)) + 1 }

// inflight records the start times of child I/Os that run inline in the
// caller's goroutine, so the watchdog can find one that hangs. Lock-free:
// a slot is claimed with a CAS from 0 to the start time.
type inflight struct {
	slots [inlineSlots]atomic.Int64
	hint  atomic.Uint32
}

// enter claims a slot, or returns -1 when all are busy.
func (t *inflight) enter() int {
	ts := now()
	h := int(t.hint.Add(1))
	for i := range inlineSlots {
		j := (h + i) % inlineSlots
		if t.slots[j].Load() == 0 && t.slots[j].CompareAndSwap(0, ts) {
			return j
		}
	}
	return -1
}

func (t *inflight) exit(j int) { t.slots[j].Store(0) }

// oldest returns the start time of the oldest inline I/O, or 0.
func (t *inflight) oldest() int64 {
	var o int64
	for i := range t.slots {
		if v := t.slots[i].Load(); v != 0 && (o == 0 || v < o) {
			o = v
		}
	}
	return o
}

// watchdog faults children whose inline I/O exceeded the child timeout:
// the device is closed, which makes devices that abort on close (NVMe/TCP
// initiator, fault wrapper) return the stuck call. It runs until stop is
// closed; Shutdown stops and waits for it.
func (n *Nexus) watchdog(stop <-chan struct{}) {
	defer n.wdDone.Done()
	period := min(max(n.cfg.ChildTimeout/4, time.Millisecond), time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	limit := int64(n.cfg.ChildTimeout)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s := n.snap.Load()
		check := func(in *instance) {
			if o := in.inline.oldest(); o != 0 && now()-o > limit {
				err := fmt.Errorf("inline I/O running for over %v: %w", n.cfg.ChildTimeout, blockdev.ErrTimeout)
				if ferr := n.childFailed(in, err, nil); ferr != nil {
					n.log.Warn("hung child not faulted", "child", in.c.uri, "err", ferr)
				}
			}
		}
		for _, in := range s.healthy {
			check(in)
		}
		for _, tg := range s.rebuilding {
			check(tg.inst)
		}
	}
}
