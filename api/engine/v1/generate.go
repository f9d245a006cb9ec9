// Package enginev1 holds the Kura engine gRPC API (engine.proto) and its
// generated Go code. Regenerate with: go generate ./api/...
package enginev1

//go:generate ../../../scripts/genproto.sh
