#!/bin/bash
# cpu-per-io.sh: server CPU, syscalls and context switches per I/O of an
# nbdbench binary for a FIXED number of fio requests (steadier than IOPS on a
# busy machine). Used for the "CPU per I/O after tuning" table in docs/nbd.md.
#
#   go build -o /tmp/nbdbench ./internal/nbd/nbdbench
#   internal/nbd/nbdbench/cpu-per-io.sh /tmp/nbdbench uring randread 32 20000 [GOMAXPROCS]
#
# MODE: malloc | file | uring (file/uring serve $IMG, default /var/tmp/kmeas.img,
# which must exist). Prints cpu_us/io (10 ms ticks: use >= 4000 I/Os),
# read/write syscalls per I/O (/proc/PID/io; io_uring_enter not included),
# context switches per I/O (all threads), fio IOPS and mean latency.
BIN=$1; MODE=$2; RW=$3; QD=$4; N=$5; GMP=${6:-}
PORT=$((20000 + (RANDOM*7 + $$) % 30000))
case $MODE in
  malloc) args="-malloc-mb 256";;
  file) args="-file ${IMG:-/var/tmp/kmeas.img}";;
  uring) args="-file ${IMG:-/var/tmp/kmeas.img} -uring";;
esac
GOMAXPROCS=$GMP $BIN -listen 127.0.0.1:$PORT $args & pid=$!
sleep 0.3
st() { # utime+stime ticks, syscr, syscw, vol+invol ctxsw over all threads
  read -r u s < <(awk '{print $14, $15}' /proc/$pid/stat)
  r=$(awk '/syscr/{print $2}' /proc/$pid/io); w=$(awk '/syscw/{print $2}' /proc/$pid/io)
  cs=$(cat /proc/$pid/task/*/status | awk '/ctxt_switches/{s+=$2} END{print s}')
  echo $((u+s)) $r $w $cs
}
# warm-up (connect + slots)
fio --name=w --ioengine=nbd --uri=nbd://127.0.0.1:$PORT/disk --rw=$RW --bs=4k --iodepth=$QD --number_ios=200 --norandommap --randrepeat=0 --output=/dev/null >/dev/null 2>&1
read t0 r0 w0 c0 < <(st)
out=$(fio --name=m --ioengine=nbd --uri=nbd://127.0.0.1:$PORT/disk --rw=$RW --bs=4k --iodepth=$QD --number_ios=$N --norandommap --randrepeat=0 --output-format=terse 2>&1)
read t1 r1 w1 c1 < <(st)
kill $pid; wait $pid 2>/dev/null
tck=$(getconf CLK_TCK)
iops=$(echo "$out" | grep "^3;" | awk -F';' '{print $8+$49}'); lat=$(echo "$out" | grep "^3;" | awk -F';' '{print ($40+$81)}')
awk -v t=$((t1-t0)) -v r=$((r1-r0)) -v w=$((w1-w0)) -v c=$((c1-c0)) -v n=$N -v hz=$tck -v iops="$iops" -v lat="$lat" -v tag="$(basename $BIN) $MODE $RW QD$QD gmp=$GMP" \
 'BEGIN{printf "%-40s cpu_us/io=%6.1f reads/io=%.2f writes/io=%.2f ctxsw/io=%.2f iops=%d lat_us=%.0f\n", tag, t*1e6/hz/n, r/n, w/n, c/n, iops, lat}'
