// Package pool turns one blockdev.Device into a pool of replicas (logical
// volumes): a self-describing, versioned, CRC32C-checksummed on-disk format
// (docs/pool-format.md), a cluster allocator, thick and thin replicas,
// resize, and O(1) copy-on-write snapshots and clones.
//
// Crash safety comes from two alternating checkpoint slots plus a metadata
// journal: every metadata change is a record applied to the in-memory state
// and appended to the journal by a group-commit leader; replay after a crash
// applies the same records to the newest valid checkpoint. Data writes to
// already-allocated clusters go straight to the device.
//
// Lock order (outermost first): Pool.adminMu, Pool.allocMu, Pool.mu,
// volume.amu, Pool.cm. No lock is held across device I/O on the data path.
package pool
