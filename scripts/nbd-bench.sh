#!/usr/bin/env bash
# nbd-bench.sh: quick fio (ioengine=nbd) comparison of Kura's NBD server with
# nbdkit and qemu-nbd on this machine. Rounds alternate between servers; the
# table shows medians. Needs fio, nbdkit, qemu-utils (scripts/test-packages.txt).
#
#   scripts/nbd-bench.sh                 # all targets, 3 rounds x 6 s
#   ROUNDS=5 RUNTIME=10 TARGETS="kura-malloc nbdkit-memory" scripts/nbd-bench.sh
#   KURA_GOMAXPROCS=8 scripts/nbd-bench.sh
#
# Targets: kura-malloc nbdkit-memory kura-file kura-uring nbdkit-file qemu-nbd
# Workloads (WORKLOADS): randread:1 randread:32 randwrite:1 randwrite:32 (rw:iodepth).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
RUNTIME=${RUNTIME:-6}
SIZE_MB=${SIZE_MB:-1024}
IMG=${IMG:-/tmp/nbd-bench.img}
OUT=${OUT:-/tmp/nbd-bench}
TARGETS=${TARGETS:-"kura-malloc nbdkit-memory kura-file kura-uring nbdkit-file qemu-nbd"}
WORKLOADS=${WORKLOADS:-"randread:1 randread:32 randwrite:1 randwrite:32"}
BASEPORT=${BASEPORT:-20809}
mkdir -p "$OUT"

for t in fio nbdkit qemu-nbd python3; do
  command -v "$t" >/dev/null || { echo "missing $t (see scripts/test-packages.txt)" >&2; exit 1; }
done
go build -o "$OUT/nbdbench" ./internal/nbd/nbdbench

if [ ! -f "$IMG" ] || [ "$(stat -c %s "$IMG")" -ne $((SIZE_MB << 20)) ]; then
  echo "creating $IMG (${SIZE_MB} MiB of random data)" >&2
  dd if=/dev/urandom of="$IMG" bs=1M count="$SIZE_MB" oflag=direct status=none
fi

pids=()
declare -A pidof
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

port_of() { local i=0; for t in $TARGETS; do [ "$t" = "$1" ] && { echo $((BASEPORT + i)); return; }; i=$((i + 1)); done; }
uri_of() {
  case $1 in
    kura-*) echo "nbd://127.0.0.1:$(port_of "$1")/disk" ;;
    *) echo "nbd://127.0.0.1:$(port_of "$1")/" ;;
  esac
}

for t in $TARGETS; do
  p=$(port_of "$t")
  case $t in
    kura-malloc) GOMAXPROCS=${KURA_GOMAXPROCS:-} "$OUT/nbdbench" -listen 127.0.0.1:$p -malloc-mb "$SIZE_MB" -pprof 127.0.0.1:$((p + 1000)) & ;;
    kura-file)   GOMAXPROCS=${KURA_GOMAXPROCS:-} "$OUT/nbdbench" -listen 127.0.0.1:$p -file "$IMG" -pprof 127.0.0.1:$((p + 1000)) & ;;
    kura-uring)  GOMAXPROCS=${KURA_GOMAXPROCS:-} "$OUT/nbdbench" -listen 127.0.0.1:$p -file "$IMG" -uring -pprof 127.0.0.1:$((p + 1000)) & ;;
    nbdkit-memory) nbdkit -f -i 127.0.0.1 -p "$p" memory "${SIZE_MB}M" & ;;
    nbdkit-file)   nbdkit -f -i 127.0.0.1 -p "$p" file "$IMG" cache=none & ;;
    qemu-nbd)      qemu-nbd -t -b 127.0.0.1 -p "$p" -f raw --cache=none --aio=io_uring --shared=8 "$IMG" & ;;
    *) echo "unknown target $t" >&2; exit 1 ;;
  esac
  pids+=($!)
  pidof[$t]=$!
done
sleep 1

# Memory targets read zeros until written: fill them once.
for t in $TARGETS; do
  case $t in kura-malloc|nbdkit-memory)
    fio --name=fill --ioengine=nbd --uri="$(uri_of "$t")" --rw=write --bs=1m --iodepth=8 --size="${SIZE_MB}m" \
      --output=/dev/null ;;
  esac
done

results="$OUT/results.tsv"
: > "$results"
for r in $(seq 1 "$ROUNDS"); do
  for w in $WORKLOADS; do
    rw=${w%%:*}; qd=${w##*:}
    for t in $TARGETS; do
      j="$OUT/$t-$rw-$qd-$r.json"
      cpu0=$(awk '{print $14+$15}' "/proc/${pidof[$t]}/stat")
      fio --name=b --ioengine=nbd --uri="$(uri_of "$t")" --rw="$rw" --bs=4k --iodepth="$qd" \
        --size="${SIZE_MB}m" --runtime="$RUNTIME" --time_based --norandommap --randrepeat=0 \
        --output-format=json --output="$j"
      cpu1=$(awk '{print $14+$15}' "/proc/${pidof[$t]}/stat")
      python3 - "$j" "$t" "$rw" "$qd" "$r" "$((cpu1 - cpu0))" "$(getconf CLK_TCK)" >> "$results" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
side = j["read"] if sys.argv[3].endswith("read") else j["write"]
cpu_us = int(sys.argv[6]) * 1e6 / int(sys.argv[7]) / max(side["total_ios"], 1)
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5],
                 "%.1f" % (side["iops"] / 1000), "%.0f" % (side["lat_ns"]["mean"] / 1000), "%.1f" % cpu_us]))
PY
      echo "round $r $t $rw QD$qd: $(tail -1 "$results" | cut -f5-7)" >&2
    done
  done
done

python3 - "$results" "$TARGETS" <<'PY'
import sys, statistics, collections
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
targets = sys.argv[2].split()
d = collections.defaultdict(list)
for t, rw, qd, r, kiops, lat, cpu in rows:
    d[(t, rw, qd)].append((float(kiops), float(lat), float(cpu)))
loads = []
for t, rw, qd, *_ in rows:
    if (rw, qd) not in loads: loads.append((rw, qd))
print("cells: median kIOPS / mean latency / server CPU µs per I/O (%d rounds)" % len({r[3] for r in rows}))
print()
print("| 4k workload | " + " | ".join(targets) + " |")
print("|---" * (len(targets) + 1) + "|")
for rw, qd in loads:
    cells = []
    for t in targets:
        v = d.get((t, rw, qd))
        if not v: cells.append("-"); continue
        k = statistics.median(x[0] for x in v); l = statistics.median(x[1] for x in v)
        c = statistics.median(x[2] for x in v)
        cells.append("%.1f k / %.0f µs / %.1f" % (k, l, c))
    print("| %s QD%s | %s |" % (rw, qd, " | ".join(cells)))
PY
