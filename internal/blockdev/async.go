package blockdev

// Async is implemented by devices that can start reads and writes without
// blocking the caller (Uring, and pool replicas on top of one). It is an
// optional fast path next to Device: a caller tries StartQueued and, when
// it returns false, does the same I/O with ReadAt or WriteAt.
//
// Contract:
//   - StartQueued starts reading (write=false) or writing p at off and
//     returns true, or starts nothing and returns false (empty, too large
//     or misaligned buffer, invalid range, no free slot, device closing, an
//     operation that needs the synchronous path such as a thin replica's
//     first write). p must not be touched until cb.IODone.
//   - A started operation may wait in the device until Submit (or any other
//     submission on the device); a caller starting several operations in a
//     row calls Submit once after the last and before it waits for any.
//   - cb.IODone is called exactly once per started operation, with the
//     bytes transferred and the error (nil only when all of p was
//     transferred); after a batch of IODone calls, cb.IOFlush is called once
//     for each of them. Both run on a goroutine that reaps completions: they
//     must return quickly and never wait for other I/O.
//   - Completion of an asynchronous write means the same as WriteAt
//     returning: durability still needs Flush.
type Async interface {
	StartQueued(write bool, p []byte, off int64, cb IOCompletion) bool
	Submit()
}

// IOCompletion receives the results of operations started through Async
// (see its contract).
type IOCompletion interface {
	IODone(n int, err error)
	IOFlush()
}

var _ Async = (*Uring)(nil)
