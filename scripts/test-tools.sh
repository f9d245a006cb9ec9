#!/bin/sh
# Installs the Go tools the tests drive (called by scripts/test.sh).
set -eu
export PATH="$(go env GOPATH)/bin:$PATH"
command -v grpcurl >/dev/null 2>&1 || go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
