#!/bin/sh
# Regenerates the Go code for api/engine/v1 from engine.proto.
# Needs protoc (apt-get install protobuf-compiler) and the Go plugins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
# Run via: go generate ./api/...
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
PATH="$(go env GOPATH)/bin:$PATH"
cd "$root/api/engine/v1"
protoc -I . \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  engine.proto
