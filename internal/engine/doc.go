// Package engine is the Kura storage engine daemon: it owns the pools,
// replicas, bdevs and shares of one node and serves the engine gRPC API
// (api/engine/v1) with server reflection and the standard health service.
//
// State that must survive a restart (pools to import, bdevs to reopen,
// shares and their allow-lists) is kept in a small JSON file in the data
// directory, written atomically (temp file, fsync, rename, fsync of the
// directory) after every change. On start the engine re-imports its pools
// and re-creates its shares without being told.
//
// Concurrency: state-changing RPCs are serialized by Engine.opMu so the
// state file always reflects a total order of changes; read-only RPCs take
// only the short-lived Engine.mu read lock and never wait behind I/O of a
// running create or destroy. Data-path I/O never touches either lock.
//
// Errors are mapped to gRPC status codes in exactly one place (errors.go).
package engine
