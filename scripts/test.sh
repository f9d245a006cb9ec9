#!/usr/bin/env bash
# Runs Kura's whole test suite on a fresh Debian machine: installs the Debian
# packages and Go tools the tests drive (fio, qemu, nbdkit, tshark, grpcurl,
# ...), then vets and tests every package with real clients required.
#
#   scripts/test.sh            # default suite (CI), ~15-20 min on 2 cores
#   KURA_LONG=1 scripts/test.sh  # long mode: soak, 200+ crash cycles, -race, fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin:$PATH"

log() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

log "Debian packages"
mapfile -t pkgs < <(grep -v '^\s*#' scripts/test-packages.txt | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -x scripts/test-tools.sh ]; then
	log "Go tools"
	scripts/test-tools.sh
fi

if [ -x scripts/guest-build.sh ]; then
	log "QEMU guest image (kernel NVMe/TCP + NBD initiators)"
	scripts/guest-build.sh
fi

log "go build + vet"
go build ./...
go vet ./...

log "go test"
export KURA_REQUIRE_TOOLS=1
timeout_flag="-timeout 20m"
if [ "${KURA_LONG:-0}" = 1 ]; then timeout_flag="-timeout 80m"; fi
# -p 2: the machine has 2 cores; packages with QEMU guests are slow under contention.
go test -p 2 $timeout_flag -count=1 ./...

if [ "${KURA_LONG:-0}" = 1 ]; then
	# The race detector over every in-process package (≈ 5 min on 2 cores;
	# the engines the tests spawn are normal builds).
	log "go test -race (KURA_LONG=1)"
	go test -race -p 2 -timeout 30m -count=1 ./internal/... ./volume/...
fi

if [ "${KURA_LONG:-0}" = 1 ]; then
	log "fuzzing (KURA_LONG=1): ${KURA_FUZZTIME:=60s} per target"
	for pkg in $(go list ./...); do
		dir=$(go list -f '{{.Dir}}' "$pkg")
		for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //'); do
			echo "fuzz $pkg $f"
			go test -run '^$' -fuzz "^$f\$" -fuzztime "$KURA_FUZZTIME" "$pkg"
		done
	done
fi
log "all tests passed"
