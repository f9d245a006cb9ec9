// Package nexus implements the Kura volume: a block device that mirrors
// onto N children (any blockdev URI).
//
// I/O path (no lock held across child I/O):
//
//   - The set of children is an immutable snapshot behind an
//     atomic.Pointer (RCU-like); admin operations build a new snapshot
//     under the control mutex and swap it in.
//   - Writes, write-zeroes, unmap and flush fan out to every healthy child
//     and to a rebuilding child (for ranges the rebuild has already copied
//     or will not copy), concurrently, through per-child worker goroutines
//     and pooled request structs, and complete when all have. A child that
//     fails is faulted (the NexusInfo store is updated first) and the I/O
//     succeeds if a healthy child took it. The last healthy child is never
//     faulted.
//   - Reads go to the healthy child with the fewest outstanding I/Os; a
//     failed read faults that child and is retried on another.
//   - Child I/O has a timeout: a hung child is faulted and its device
//     closed; the hung request is abandoned (children work on a pooled
//     bounce buffer, never the caller's, so a late completion cannot touch
//     memory the caller owns again),
//     and the child cannot be onlined again until its hung I/O returned.
//
// Child lifecycle is a deterministic state machine (childstate.go). Rebuild
// (full or partial from a persistent dirty-segment log) lives in package
// rebuild; rebuildctl.go is the glue.
package nexus
