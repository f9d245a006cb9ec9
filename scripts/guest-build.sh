#!/usr/bin/env bash
# guest-build.sh: build (or reuse) the Kura test guest: a Debian cloud kernel
# plus an initramfs with busybox, the NVMe/TCP, nvmet, nbd and brd modules,
# and nvme-cli, fio, e2fsprogs and nbd-client. The guest boots under QEMU TCG
# (see internal/guest and docs/testing-kernel.md).
#
# Usage: scripts/guest-build.sh [--force]
#
# The result lives in ${KURA_GUEST_CACHE:-/var/cache/kura-guest}/<kernel-version>/:
#   vmlinuz        the kernel
#   initrd.cpio    the base initramfs (uncompressed newc cpio); a test appends a
#                  second cpio holding /test.sh (512-byte aligned)
#   build-id       hash of this script: a changed script rebuilds the image
# The last line on stdout is that directory; all progress goes to stderr.
#
# Environment:
#   KURA_GUEST_CACHE   cache root (default /var/cache/kura-guest)
#   KURA_GUEST_KPKG    kernel package to use (default: what linux-image-cloud-amd64 depends on)
#   KURA_GUEST_NO_APT  set to 1 to never call apt-get (fail instead)
set -euo pipefail

log() { printf 'guest-build: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

CACHE="${KURA_GUEST_CACHE:-/var/cache/kura-guest}"
SELF="$(readlink -f "${BASH_SOURCE[0]}")"
BUILD_ID="$(sha256sum "$SELF" | cut -c1-16)"
START=$(date +%s.%N)

mkdir -p "$CACHE"

# Serialise concurrent builders (go test runs packages in parallel).
exec 9>"$CACHE/.lock"
flock -w 900 9 || die "could not lock $CACHE/.lock"

# Host tools: the command each one provides, and its Debian package.
declare -A TOOL_PKG=(
	[qemu-system-x86_64]=qemu-system-x86
	[busybox]=busybox-static
	[cpio]=cpio
	[socat]=socat
	[nvme]=nvme-cli
	[fio]=fio
	[mke2fs]=e2fsprogs
	[e2fsck]=e2fsprogs
	[depmod]=kmod
	[modprobe]=kmod
	[nbd-client]=nbd-client
)

APT_UPDATED=0
apt_update() {
	[[ $APT_UPDATED == 1 ]] && return 0
	[[ "${KURA_GUEST_NO_APT:-0}" == 1 ]] && die "apt-get needed but KURA_GUEST_NO_APT=1"
	log "apt-get update"
	apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
	APT_UPDATED=1
}

ensure_tools() {
	local missing=() t
	for t in "${!TOOL_PKG[@]}"; do
		PATH="$PATH:/usr/sbin:/sbin" command -v "$t" >/dev/null 2>&1 || missing+=("${TOOL_PKG[$t]}")
	done
	# busybox must be the static one: it runs inside the guest.
	if command -v busybox >/dev/null 2>&1 && ldd "$(command -v busybox)" >/dev/null 2>&1; then
		missing+=(busybox-static)
	fi
	[[ ${#missing[@]} -eq 0 ]] && return 0
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	[[ "${KURA_GUEST_NO_APT:-0}" == 1 ]] && die "missing packages: ${missing[*]}"
	log "installing: ${missing[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
		--no-install-recommends "${missing[@]}" >&2; then
		apt_update
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
			--no-install-recommends "${missing[@]}" >&2
	fi
}

kernel_pkg() {
	if [[ -n "${KURA_GUEST_KPKG:-}" ]]; then
		echo "$KURA_GUEST_KPKG"
		return
	fi
	local p
	p=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}' || true)
	if [[ -z "$p" ]]; then
		apt_update
		p=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
	fi
	[[ -n "$p" ]] || die "cannot find the Debian cloud kernel package"
	echo "$p"
}

is_built() { [[ -f "$1/build-id" && "$(cat "$1/build-id")" == "$BUILD_ID" && -f "$1/vmlinuz" && -f "$1/initrd.cpio" ]]; }

ensure_tools

# The image is keyed by kernel version: ask apt (without updating) which
# cloud kernel is current. Without package lists, reuse any image this
# script built rather than running apt-get update.
# apt-cache costs about a CPU second, so its answer is remembered until the
# package lists change (apt-get update).
KPKG=${KURA_GUEST_KPKG:-}
LISTS_STAMP=$(stat -c %Y /var/lib/apt/lists 2>/dev/null || echo none)
if [[ -z "$KPKG" && -f "$CACHE/.kpkg" && "$(head -1 "$CACHE/.kpkg")" == "$LISTS_STAMP" ]]; then
	KPKG=$(sed -n 2p "$CACHE/.kpkg")
fi
if [[ -z "$KPKG" ]]; then
	KPKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}' || true)
	[[ -n "$KPKG" ]] && printf '%s\n%s\n' "$LISTS_STAMP" "$KPKG" > "$CACHE/.kpkg"
fi
if [[ -z "$KPKG" && $FORCE == 0 ]]; then
	for d in "$CACHE"/*/; do
		if is_built "${d%/}"; then
			log "cached (no apt lists): ${d%/}"
			echo "${d%/}"
			exit 0
		fi
	done
fi
[[ -n "$KPKG" ]] || KPKG=$(kernel_pkg)
KVER=${KPKG#linux-image-}
OUT="$CACHE/$KVER"
if [[ $FORCE == 0 ]] && is_built "$OUT"; then
	log "cached: $OUT"
	echo "$OUT"
	exit 0
fi

log "building guest for $KPKG into $OUT"
WORK=$(mktemp -d "$CACHE/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# 1. Kernel: download (never install) and extract.
(cd "$WORK" && apt-get download "$KPKG" >&2 2>/dev/null) || { apt_update; (cd "$WORK" && apt-get download "$KPKG" >&2); }
mkdir -p "$WORK/k"
dpkg-deb -x "$WORK"/"$KPKG"_*.deb "$WORK/k"
[[ -f "$WORK/k/boot/vmlinuz-$KVER" ]] || die "no vmlinuz in $KPKG"
depmod -b "$WORK/k" "$KVER"

# 2. Root tree.
R="$WORK/root"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,mnt,root,var/run,lib/modules/"$KVER"}
cp "$(command -v busybox)" "$R/bin/busybox"
# Symlinks for every busybox applet, so the image works before /init runs --install.
for a in $("$R/bin/busybox" --list); do
	[[ -e "$R/bin/$a" ]] || ln -s busybox "$R/bin/$a"
done

# 3. Modules and their dependencies.
MODULES=(virtio_net virtio_pci nvme-tcp nvme-fabrics nvmet nvmet-tcp nbd brd null_blk loop configfs crc32c-intel crc32c_generic)
for m in "${MODULES[@]}"; do
	modprobe -d "$WORK/k" -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}'
done | sort -u | while read -r ko; do
	rel=${ko#"$WORK/k/"}
	mkdir -p "$R/$(dirname "$rel")"
	cp "$ko" "$R/$rel"
done
cp "$WORK/k/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$KVER/" 2>/dev/null || true
depmod -b "$R" "$KVER"
printf '%s\n' virtio_pci virtio_net configfs nbd nvme-fabrics nvme-tcp nvmet nvmet-tcp crc32c-intel > "$R/etc/modules"

# 4. Dynamic binaries and the libraries ldd lists.
add_bin() { # add_bin /path/on/host [dest-dir]
	local src=$1 dst=${2:-$(dirname "$1")}
	[[ -x "$src" ]] || die "missing binary $src"
	mkdir -p "$R$dst"
	cp -L "$src" "$R$dst/$(basename "$src")"
	ldd "$src" 2>/dev/null | awk '/=>/{print $3} /^\t\//{print $1}' | while read -r lib; do
		[[ -n "$lib" && -e "$lib" ]] || continue
		mkdir -p "$R$(dirname "$lib")"
		[[ -e "$R$lib" ]] || cp -L "$lib" "$R$lib"
	done
}
for b in nvme fio mke2fs e2fsck nbd-client; do
	add_bin "$(PATH="$PATH:/usr/sbin:/sbin" command -v "$b")"
done
# Real dd/md5sum/blockdev from coreutils/util-linux beside busybox's.
add_bin /usr/bin/dd /usr/bin
ln -sf mke2fs "$R/usr/sbin/mkfs.ext4"
ln -sf e2fsck "$R/usr/sbin/fsck.ext4"
cp /etc/mke2fs.conf "$R/etc/mke2fs.conf" 2>/dev/null || true
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
echo 'root:x:0:' > "$R/etc/group"
mkdir -p "$R/etc/nvme"
echo 'nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000c0de' > "$R/etc/nvme/hostnqn"
echo '00000000-0000-4000-8000-00000000c0de' > "$R/etc/nvme/hostid"

# 5. /init.
cat > "$R/init" <<'EOF'
#!/bin/busybox sh
# Kura test guest init: set up, run /test.sh, print the result, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
for m in $(cat /etc/modules); do modprobe "$m" 2>/dev/null || echo "KURA-GUEST: modprobe $m failed"; done
mount -t configfs configfs /sys/kernel/config 2>/dev/null
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
export KURA_HOST=10.0.2.100 KURA_GUEST_IP=10.0.2.15
[ -f /env.sh ] && . /env.sh
echo "KURA-GUEST: booted $(uname -r) uptime $(cut -d' ' -f1 /proc/uptime)s"
rc=1
if [ -f /test.sh ]; then
	cd /tmp
	sh -e /test.sh
	rc=$?
else
	echo "KURA-GUEST: no /test.sh"
fi
if [ "$rc" = 0 ]; then
	echo "KURA-GUEST-RESULT: PASS rc=0"
else
	echo "KURA-GUEST: last kernel messages:"
	dmesg | tail -40
	echo "KURA-GUEST-RESULT: FAIL rc=$rc"
fi
sync
poweroff -f
EOF
chmod 755 "$R/init"

# 6. Pack.
mkdir -p "$OUT.new"
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) > "$OUT.new/initrd.cpio"
cp "$WORK/k/boot/vmlinuz-$KVER" "$OUT.new/vmlinuz"
echo "$BUILD_ID" > "$OUT.new/build-id"
echo "$KPKG" > "$OUT.new/kernel-package"
rm -rf "$OUT"
mv "$OUT.new" "$OUT"
log "built $OUT ($(du -sh "$OUT/initrd.cpio" | cut -f1) initramfs) in $(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
echo "$OUT"
