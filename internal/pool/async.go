package pool

import (
	"fmt"

	"github.com/kura-io/kura/internal/blockdev"
)

// Asynchronous replica I/O (blockdev.Async). A read or write that falls
// within one cluster the replica can address directly — its own cluster
// for a write, any resolved cluster for a read — is translated to the
// pool device's offset and started there without blocking; everything
// else (reads of unallocated space, first writes and copy-on-write, I/O
// spanning clusters, a replica being snapshotted) returns false and takes
// the synchronous path. The I/O gate is held from the map lookup until
// the device reports completion, so a snapshot's freeze, a resize or a
// destroy waits for in-flight asynchronous I/O exactly as for ReadAt and
// WriteAt.

// asyncOp is one asynchronous replica I/O in flight. Recycled through
// Pool.ops; owned by the device from StartQueued until IOFlush.
type asyncOp struct {
	p  *Pool
	g  gateRef
	cb blockdev.IOCompletion
}

// IODone passes the device's result on.
func (o *asyncOp) IODone(n int, err error) { o.cb.IODone(n, err) }

// IOFlush leaves the gate, recycles o and passes the flush on.
func (o *asyncOp) IOFlush() {
	cb, g := o.cb, o.g
	o.cb, o.g = nil, gateRef{}
	o.p.ops.Put(o)
	g.exit()
	cb.IOFlush()
}

// StartQueued starts a read or write of the replica asynchronously when
// its pool device supports it and the range maps directly onto one
// cluster (see blockdev.Async); false means nothing was started.
func (r *Replica) StartQueued(write bool, b []byte, off int64, cb blockdev.IOCompletion) bool {
	return r.p.startVol(r.v, write, b, off, cb)
}

// Submit submits the asynchronous I/O queued on the pool device.
func (r *Replica) Submit() {
	if a := r.p.async; a != nil {
		a.Submit()
	}
}

func (p *Pool) startVol(v *volume, write bool, b []byte, off int64, cb blockdev.IOCompletion) bool {
	return p.startVolOn(p.async, v, write, b, off, cb)
}

// startVolOn starts v's I/O on a (the pool device, or a Queue on it).
func (p *Pool) startVolOn(a blockdev.Async, v *volume, write bool, b []byte, off int64, cb blockdev.IOCompletion) bool {
	if a == nil || len(b) == 0 || blockdev.CheckRange(off, int64(len(b)), p.bs, v.size.Load()) != nil {
		return false
	}
	if write && v.snapshot() {
		return false
	}
	cs := p.label.ClusterSize
	l, in := uint32(off/cs), off%cs
	if in+int64(len(b)) > cs {
		return false
	}
	g := p.enter()
	if v.destroyed.Load() || (write && v.frozen.Load() != nil) {
		g.exit()
		return false
	}
	var c uint32
	if write {
		if m := v.cm(); l < m.n {
			c = m.get(l)
		}
	} else {
		c = resolve(v, l)
	}
	if !isCluster(c) {
		g.exit()
		return false
	}
	o := p.ops.Get().(*asyncOp)
	o.g, o.cb = g, cb
	if !a.StartQueued(write, b, p.clusterOff(c-1)+in, o) {
		o.cb, o.g = nil, gateRef{}
		p.ops.Put(o)
		g.exit()
		return false
	}
	return true
}

// OpenQueue gives the calling goroutine, locked to its thread, a Queue on
// the pool device for this replica's I/O (blockdev.QueueOpener): its
// StartQueued translates and refuses exactly as the replica's does.
func (r *Replica) OpenQueue() (blockdev.Queue, error) {
	qo, ok := r.p.dev.(blockdev.QueueOpener)
	if !ok || r.p.async == nil {
		return nil, fmt.Errorf("pool %s: device %s: %w", r.p.label.Name, r.p.dev, blockdev.ErrNotSupported)
	}
	q, err := qo.OpenQueue()
	if err != nil {
		return nil, err
	}
	return &replicaQueue{Queue: q, r: r}, nil
}

// JoinQueue returns a view of q that starts this replica's I/O on q's
// ring (blockdev.QueueJoiner), translating and refusing as StartQueued.
func (r *Replica) JoinQueue(q blockdev.Queue) (blockdev.Queue, error) {
	qj, ok := r.p.dev.(blockdev.QueueJoiner)
	if !ok || r.p.async == nil {
		return nil, fmt.Errorf("pool %s: device %s: %w", r.p.label.Name, r.p.dev, blockdev.ErrNotSupported)
	}
	v, err := qj.JoinQueue(q)
	if err != nil {
		return nil, err
	}
	return &replicaQueue{Queue: v, r: r}, nil
}

// replicaQueue is a Queue on the pool device that addresses one replica.
type replicaQueue struct {
	blockdev.Queue
	r *Replica
}

// StartQueued starts the replica's I/O on the queue when it maps directly
// onto one cluster (as Replica.StartQueued).
func (q *replicaQueue) StartQueued(write bool, b []byte, off int64, cb blockdev.IOCompletion) bool {
	return q.r.p.startVolOn(q.Queue, q.r.v, write, b, off, cb)
}

// Unwrap returns the pool device's queue (blockdev.QueueWrapper).
func (q *replicaQueue) Unwrap() blockdev.Queue { return q.Queue }

var (
	_ blockdev.Async        = (*Replica)(nil)
	_ blockdev.QueueOpener  = (*Replica)(nil)
	_ blockdev.QueueJoiner  = (*Replica)(nil)
	_ blockdev.QueueWrapper = (*replicaQueue)(nil)
)
