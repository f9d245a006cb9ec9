# Kura — the two commands a newcomer needs:
#   make up     build and run an engine on an embedded default (a pool on a sparse file)
#   make test   run the whole test suite (installs Debian packages it needs)
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: up build test bench proto
up:
	$(GO) run ./cmd/kura up

build:
	$(GO) build -o bin/kura ./cmd/kura

test:
	scripts/test.sh

bench:
	scripts/bench.sh

proto:
	$(GO) generate ./api/...
