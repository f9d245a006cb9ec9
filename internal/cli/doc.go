// Package cli implements the kura command line: the daemons (kura engine,
// kura up) and the engine client commands (kura pool|replica|bdev|host ...),
// which talk to an engine's gRPC API at --engine (env KURA_ENGINE).
//
// Client commands print tables a person can read, or JSON with -o json, and
// exit non-zero with one clear line on stderr when something fails.
package cli
