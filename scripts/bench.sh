#!/usr/bin/env bash
# Kura's comparative benchmark suite (issue 6): one command, `make bench`.
#
# Installs what it needs (fio, nbdkit, qemu-utils, libnbd-bin, gnuplot, gcc,
# liburing-dev),
# builds kura and the benchmark's own small NBD server, creates one backing
# file (1 GiB, fully written, on a file system with O_DIRECT — never tmpfs)
# and measures, alternating systems job by job in each round:
#   raw file (fio io_uring, direct) · Kura engine (thick replica, nexus 1 and 3
#   children) and the Kura NBD server alone (aio://, uring://) · nbdkit file
#   cache=none · qemu-nbd cache=none aio=io_uring · Kura malloc vs nbdkit
#   memory · kura bench over NVMe/TCP · the loopback ceiling (scripts/loopcal:
#   the cheapest C client and server, 4k random only)
# at 4k randread QD1/4/16/32, 4k randwrite QD1/32, 128k seq read/write QD8.
# Writes docs/benchmarks/results.json, docs/benchmarks/iops-vs-qd.png and the
# generated section of docs/benchmarks.md.
#
#   scripts/bench.sh                      # full run: 3 rounds × 6 s per job (~30-40 min)
#   scripts/bench.sh --quick              # smoke test: 1 round × 2 s (not a measurement)
#   scripts/bench.sh --rounds 5 --runtime 10
#   scripts/bench.sh --only raw,kura-replica,nbdkit-file --workloads qd32
#   BENCH_FILE=/data/x.img scripts/bench.sh   # another disk / file system
#
# Kura systems whose parts are not built are reported "not available"; the
# run goes on with the others. Run it on an otherwise idle machine: the
# load average is recorded next to the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

log() { printf '== %s (%s)\n' "$*" "$(date +%T)" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# --- tools -----------------------------------------------------------------
need=()
command -v fio >/dev/null || need+=(fio)
command -v nbdkit >/dev/null || need+=(nbdkit)
command -v qemu-nbd >/dev/null || need+=(qemu-utils)
command -v nbdinfo >/dev/null || need+=(libnbd-bin)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
command -v gcc >/dev/null || need+=(gcc)
[ -e /usr/include/liburing.h ] || need+=(liburing-dev)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	$SUDO apt-get update -qq -o DPkg::Lock::Timeout=300 || true
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
		-o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null
fi

# --- build -----------------------------------------------------------------
mkdir -p bin
log "building kurabench"
go build -o bin/kurabench ./cmd/kurabench
# Kura parts are optional: a build failure makes those systems "not available".
rm -f bin/kura bin/kurabench-nbd
if go build -o bin/kura ./cmd/kura 2>bin/.kura-build.log; then
	log "built bin/kura"
else
	log "kura does not build (engine systems will be skipped): $(head -c 300 bin/.kura-build.log)"
fi
if [ -d cmd/kurabench/nbdserver ]; then
	if go build -o bin/kurabench-nbd ./cmd/kurabench/nbdserver 2>bin/.kurabench-nbd-build.log; then
		log "built bin/kurabench-nbd"
	else
		log "kurabench-nbd does not build (Kura server-alone systems will be skipped): $(head -c 300 bin/.kurabench-nbd-build.log)"
	fi
fi

# The loopback ceiling (scripts/loopcal, C): optional like the Kura parts.
rm -f bin/loopcal-server bin/loopcal-client
if gcc -O2 -Wall -o bin/loopcal-server scripts/loopcal/server.c -luring 2>bin/.loopcal-build.log &&
	gcc -O2 -Wall -o bin/loopcal-client scripts/loopcal/client.c 2>>bin/.loopcal-build.log; then
	log "built bin/loopcal-server, bin/loopcal-client"
else
	log "loopcal does not build (the loopback ceiling will be skipped): $(head -c 300 bin/.loopcal-build.log)"
fi

# --- backing file: a disk file system that supports O_DIRECT ------------------
file="${BENCH_FILE:-}"
if [ -z "$file" ]; then
	for d in /var/tmp /tmp "$PWD"; do
		fs=$(df --output=fstype "$d" 2>/dev/null | tail -1 || true)
		if [ -n "$fs" ] && [ "$fs" != tmpfs ] && [ "$fs" != ramfs ] && [ "$fs" != overlay ]; then
			file="$d/kura-bench/disk.img"
			break
		fi
	done
fi
if [ -z "$file" ]; then
	echo "bench: no disk file system for the backing file (all tmpfs?); set BENCH_FILE" >&2
	exit 1
fi
log "backing file $file ($(df --output=fstype "$(dirname "$(dirname "$file")")" | tail -1))"

log "running the matrix"
exec bin/kurabench run --file "$file" --kura bin/kura --kura-nbd bin/kurabench-nbd --loopcal bin "$@"
