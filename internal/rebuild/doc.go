// Package rebuild copies a healthy nexus child onto a new or returning one
// while the nexus keeps serving I/O.
//
// Pieces, one per file:
//
//   - Bitmap: a lock-free segment bitmap (atomic words).
//   - RangeLock: shared/exclusive locks over segment ranges. Application
//     writes hold a range shared while a rebuild runs; a copy task holds the
//     segment it copies exclusively, so a write never races a copy of the
//     same segment.
//   - DirtyLog: the segments written while a child was away, persisted in a
//     file with group commit so it survives an engine restart (the reference
//     keeps it in memory only).
//   - Limiter: a token bucket (bytes/s) so a rebuild leaves room for client I/O.
//   - plan / jobState: the deterministic core (which segment next, job state
//     transitions), table-tested without goroutines or clocks.
//   - Job: the concurrent shell that runs a plan: copy tasks, pause, resume,
//     stop, progress and stats.
//   - Record: one finished job, for history.
package rebuild
