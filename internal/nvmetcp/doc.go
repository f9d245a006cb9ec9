// Package nvmetcp implements NVMe over TCP (NVMe/TCP Transport 1.0): the PDU
// codec, a target that exports blockdev.Devices as NVMe subsystems (one
// namespace each) to Linux kernel hosts and Kura initiators, a discovery
// controller, and an initiator that presents a remote namespace as a
// blockdev.Device (nvmf:// URIs).
//
// Target threading: each TCP connection (one NVMe queue) has one reader
// goroutine that decodes PDUs and owns the command slots of that queue
// (2×(SQSIZE+1) slots, buffers from size-classed pools). A command that is
// alone in flight runs inline in the reader (QD1 latency); deeper queues hand
// commands to lazily started per-queue workers. Completions are written under
// the queue's write lock into a buffered writer; the last completer among
// those waiting for the lock flushes, so bursts coalesce into one write
// syscall. Keep-alive uses one timer per controller; an idle target runs no
// goroutine loop.
//
// Controller state (properties, features, Identify, logs, reservations) is
// plain synchronous code driven by the queue layer, and is tested without
// sockets.
package nvmetcp
