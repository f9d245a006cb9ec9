#!/usr/bin/env bash
# guest-run.sh: boot the Kura test guest by hand (debugging aid; tests use
# internal/guest). Runs SCRIPT as /test.sh inside the guest (with the same
# prelude as the Go harness: check, must, wait_for, value) and exits with the
# guest's result.
#
# Usage: scripts/guest-run.sh [-p HOSTPORT]... [-f HOSTPORT:GUESTPORT]... SCRIPT
#   -p PORT   let the guest reach 127.0.0.1:PORT on the host as $KURA_HOST:PORT
#   -f H:G    expose guest port G on host 127.0.0.1:H
#   SCRIPT    a file, or - for stdin; use "sh" as the script for a shell-less
#             quick boot test (e.g. echo 'uname -a; nvme version' | ... -)
# Environment: KURA_GUEST_APPEND (extra kernel args), KURA_GUEST_TIMEOUT (s, default 300).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NET="user,id=n0,ipv6=off,restrict=on"
while getopts "p:f:" o; do
	case $o in
	p) NET+=",guestfwd=tcp:10.0.2.100:$OPTARG-cmd:socat - TCP:127.0.0.1:$OPTARG" ;;
	f) NET+=",hostfwd=tcp:127.0.0.1:${OPTARG%%:*}-10.0.2.15:${OPTARG##*:}" ;;
	*) sed -n '2,15p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[[ $# == 1 ]] || { sed -n '2,15p' "$0"; exit 2; }

DIR=$("$ROOT/scripts/guest-build.sh")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/root"
cp "$ROOT/internal/guest/prelude.sh" "$TMP/root/kura.sh"
{
	echo ". /kura.sh"
	if [[ $1 == - ]]; then cat; else cat "$1"; fi
	echo
	echo kura_finish
} > "$TMP/root/test.sh"
: > "$TMP/root/env.sh"

cp "$DIR/initrd.cpio" "$TMP/initrd"
size=$(stat -c %s "$TMP/initrd")
pad=$(((512 - size % 512) % 512))
head -c "$pad" /dev/zero >> "$TMP/initrd"
(cd "$TMP/root" && printf '%s\n' kura.sh test.sh env.sh | cpio -o -H newc --quiet) >> "$TMP/initrd"

out="$TMP/console"
set +e
timeout "${KURA_GUEST_TIMEOUT:-300}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1024 -smp 2 \
	-display none -nodefaults -no-reboot -serial stdio \
	-kernel "$DIR/vmlinuz" -initrd "$TMP/initrd" \
	-append "console=ttyS0 quiet panic=-1 no_timer_check nvme_core.admin_timeout=5 ${KURA_GUEST_APPEND:-}" \
	-netdev "$NET" -device virtio-net-pci,netdev=n0,romfile= </dev/null | tee "$out"
set -e
grep -q "KURA-GUEST-RESULT: PASS" "$out"
