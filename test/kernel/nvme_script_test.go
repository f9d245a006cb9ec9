package kernel_test

import (
	"fmt"
	"strings"
)

// Host identities used by the guest's kernel initiator. hostNQN is also the
// guest image's /etc/nvme/hostnqn.
const (
	hostNQN  = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000c0de"
	hostID   = "00000000-0000-4000-8000-00000000c0de"
	hostNQN2 = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-0000000000b2"
	hostID2  = "00000000-0000-4000-8000-0000000000b2"
	badNQN   = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000bad"
	badID    = "00000000-0000-4000-8000-000000000bad"
)

// nvmeScriptParams parameterise the kernel-initiator guest script, so the
// same script runs against Kura's target and (as a reference) against the
// guest's own kernel nvmet-tcp target.
type nvmeScriptParams struct {
	Addr    string // target address as seen from the guest ("$KURA_HOST", "127.0.0.1")
	Port    int
	NQN     string // main subsystem
	Size    int64  // its size in bytes
	BadHost bool   // check that badNQN is refused
	// Reservations runs the two-host reservation checks (needs hostNQN2
	// allowed on NQN). The kernel's nvmet 6.1 has no reservations.
	Reservations bool
}

// nvmeFunctions are shell helpers for the NVMe scripts.
const nvmeFunctions = `
# nsdev NQN: the block device of namespace 1 of subsystem NQN.
nsdev() {
	for s in /sys/class/nvme-subsystem/nvme-subsys*; do
		[ "$(cat $s/subsysnqn 2>/dev/null)" = "$1" ] || continue
		for n in $s/nvme*n*; do
			[ -e "$n" ] && { echo /dev/${n##*/}; return 0; }
		done
	done
	return 1
}
# ctrlfor NQN HOSTNQN: the controller character device of that association.
ctrlfor() {
	for c in /sys/class/nvme/nvme*; do
		[ "$(cat $c/subsysnqn 2>/dev/null)" = "$1" ] && [ "$(cat $c/hostnqn)" = "$2" ] && { echo /dev/${c##*/}; return 0; }
	done
	return 1
}
# nv ARGS: nvme-cli that also fails when it prints an NVMe error status.
nv() {
	_o=$(nvme "$@" 2>&1)
	_r=$?
	echo "$_o"
	[ $_r = 0 ] || return $_r
	! echo "$_o" | grep -qiE "NVMe status|conflict|error"
}
# lbs DEV: logical block size.
lbs() { cat /sys/block/${1##*/}/queue/logical_block_size; }
# wz DEV BLOCK4K: write random data to one 4 KiB block, Write Zeroes it, read zeros back.
wz() {
	_l=$(lbs $1)
	dd if=/dev/urandom of=$1 bs=4096 count=1 seek=$2 oflag=direct conv=notrunc 2>/dev/null
	nv write-zeroes $1 -n 1 -s $(($2 * 4096 / _l)) -c $((4096 / _l - 1))
	a=$(dd if=$1 bs=4096 count=1 skip=$2 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
	b=$(dd if=/dev/zero bs=4096 count=1 2>/dev/null | md5sum | cut -d' ' -f1)
	echo "after write-zeroes $a, zeros $b"
	test "$a" = "$b"
}
# fiov DEV: two fio jobs (one per CPU, so both I/O queues are busy), random
# writes at queue depth 16 over 4 MiB each, then verify (crc32c).
fiov() {
	fio --name=verify --filename=$1 --rw=randwrite --bs=4k --size=4M --offset=16M --offset_increment=4M \
		--numjobs=2 --cpus_allowed=0-1 --cpus_allowed_policy=split --ioengine=libaio \
		--iodepth=16 --direct=1 --verify=crc32c > /tmp/fio.out 2>&1 || { cat /tmp/fio.out; return 1; }
	grep -E "err=|IOPS" /tmp/fio.out
}
# pwrite CTRL LBA / pread CTRL LBA: one-block Write/Read through the
# controller character device (so the command goes to that controller,
# not through the multipath head).
pwrite() {
	dd if=/dev/urandom of=/tmp/pblk bs=$PLBS count=1 2>/dev/null
	nv io-passthru $1 -o 0x01 -n 1 -l $PLBS -w -i /tmp/pblk --cdw10=$2 --cdw11=0 --cdw12=0
}
pread() { nv io-passthru $1 -o 0x02 -n 1 -l $PLBS -r --cdw10=$2 --cdw11=0 --cdw12=0 -b >/dev/null; }
# notice CTRL TYPE: the type of the controller's next Reservation
# Notification log page (0: empty), which reading removes.
notice() {
	_t=$(nvme get-log $1 --log-id=0x80 --log-len=64 -b | od -An -tu1 -j8 -N1 | tr -d ' ')
	echo "notification type $_t"
	test "$_t" = "$2"
}
# mask CTRL VALUE: set the Reservation Notification Mask and read it back.
mask() {
	nv set-feature $1 -f 0x82 -n 1 -v $2 || return 1
	nvme get-feature $1 -f 0x82 -n 1 | tee /dev/stderr | grep -qi "value: *0x0*$(printf %x $2)\$"
}
# rep CTRL: reservation report (extended), as one line of JSON.
rep() { nvme resv-report $1 -n 1 --eds -o json | tr -d ' \n\t'; }
# has CTRL PATTERN...: the report matches every pattern.
has() {
	_r=$(rep $1)
	echo "$_r"
	shift
	for _p in "$@"; do echo "$_r" | grep -q "$_p" || return 1; done
}
`

func nvmeScript(p nvmeScriptParams) string {
	var b strings.Builder
	b.WriteString(rwScript)
	b.WriteString(nvmeFunctions)
	fmt.Fprintf(&b, "A=%s\nP=%d\nNQN=%s\nHN=%s\nHID=%s\n", p.Addr, p.Port, p.NQN, hostNQN, hostID)
	b.WriteString(`
check discover sh -c "nvme discover -t tcp -a $A -s $P --hostnqn=$HN --hostid=$HID | tee /dev/stderr | grep -q \"subnqn: *$NQN\""
`)
	if p.BadHost {
		fmt.Fprintf(&b, "check_fails bad_host_refused nvme connect -t tcp -a $A -s $P -n $NQN --hostnqn=%s --hostid=%s\n", badNQN, badID)
	}
	fmt.Fprintf(&b, `
must connect nvme connect -t tcp -a $A -s $P -n $NQN --hostnqn=$HN --hostid=$HID -i 2
must dev_appears wait_for 20 nsdev $NQN
D=$(nsdev $NQN)
C=$(ctrlfor $NQN $HN)
check two_io_queues sh -c "cat /sys/class/nvme/${C##*/}/queue_count; test \$(cat /sys/class/nvme/${C##*/}/queue_count) = 3"
check size sh -c "blockdev --getsize64 $D; test \$(blockdev --getsize64 $D) = %d"
check id_ctrl_subnqn sh -c "nvme id-ctrl $C | grep -E '^subnqn +: $NQN\$'"
idns() { _n=$(nvme id-ns $D -n 1 | awk '/^nsze/{print $3}'); _l=$(lbs $D); echo "nsze $_n lbs $_l"; test $((_n * _l)) = %d; }
check id_ns_size idns
check rw_4k rw $D 4096 16 1
check rw_16k_largest_in_capsule rw $D 16384 8 9
check rw_64k rw $D 65536 8 3
check rw_1m rw $D 1048576 4 2
check rw_4m_split_by_mdts rw $D 4194304 2 3
check rw_unaligned_seek rw $D 4096 3 1237
check fio_verify fiov $D
check flush nv flush $D -n 1
check discard blkdiscard -o 8388608 -l 1048576 $D
check write_zeroes wz $D 100
check ext4 fs_cycle $D
pattern() {
	dd if=/dev/urandom of=/tmp/pat bs=1M count=1 2>/dev/null
	dd if=/tmp/pat of=$D bs=1M seek=%d count=1 oflag=direct conv=notrunc 2>/dev/null
	value pattern_md5 $(md5sum < /tmp/pat | cut -d' ' -f1)
}
check pattern pattern
`, p.Size, p.Size, p.Size/(1<<20)-2)
	if p.Reservations {
		fmt.Fprintf(&b, `
# nvme-cli refuses a second association to the same target ("already
# connected") whatever the host NQN; the kernel does not.
must connect_second_host sh -c "echo transport=tcp,traddr=$A,trsvcid=$P,nqn=$NQN,hostnqn=%s,hostid=%s,nr_io_queues=1 > /dev/nvme-fabrics"
must second_ctrl wait_for 20 ctrlfor $NQN %s
CA=$C
CB=$(ctrlfor $NQN %s)
PLBS=$(lbs $D)
check resv_report_no_eds_refused kura_not nv resv-report $CA -n 1
check resv_register_a nv resv-register $CA -n 1 --nrkey=11 --rrega=0
check resv_register_b nv resv-register $CB -n 1 --nrkey=22 --rrega=0
check resv_report_two_registrants has $CA '"regctl":2' '"rtype":0'
check resv_reregister_same_key nv resv-register $CB -n 1 --nrkey=22 --rrega=0
check_fails resv_reregister_other_key nv resv-register $CB -n 1 --nrkey=33 --rrega=0
check resv_acquire_a_write_exclusive nv resv-acquire $CA -n 1 --crkey=11 --rtype=1 --racqa=0
check resv_report_held has $CA '"rtype":1' '"regctl":2'
check_fails resv_acquire_b_conflict nv resv-acquire $CB -n 1 --crkey=22 --rtype=1 --racqa=0
check_fails resv_we_blocks_other_write pwrite $CB 8
check resv_we_allows_other_read pread $CB 8
check resv_holder_writes pwrite $CA 8
check_fails resv_preempt_wrong_key nv resv-acquire $CB -n 1 --crkey=99 --prkey=11 --rtype=2 --racqa=1
check resv_preempt_b nv resv-acquire $CB -n 1 --crkey=22 --prkey=11 --rtype=2 --racqa=1
check resv_report_after_preempt has $CB '"rtype":2' '"regctl":1'
check resv_notice_a_preempted notice $CA 1
check resv_notice_a_taken notice $CA 0
check resv_notice_b_none notice $CB 0
check resv_notice_mask mask $CA 8
check_fails resv_ea_blocks_preempted_read pread $CA 8
check resv_holder_b_reads pread $CB 8
check_fails resv_release_wrong_type nv resv-release $CB -n 1 --crkey=22 --rtype=1 --rrela=0
check resv_release_b nv resv-release $CB -n 1 --crkey=22 --rtype=2 --rrela=0
check resv_report_released has $CB '"rtype":0' '"regctl":1'
check resv_a_writes_again pwrite $CA 8
check resv_unregister_b nv resv-register $CB -n 1 --crkey=22 --rrega=1
check resv_report_empty has $CA '"regctl":0'
`, hostNQN2, hostID2, hostNQN2, hostNQN2)
	}
	b.WriteString(`
check disconnect sh -c "nvme disconnect -n $NQN | tee /dev/stderr | grep -q disconnected"
check dev_gone wait_for 10 kura_not nsdev $NQN
# Connect/disconnect cycles: no state left behind on either side.
cycles() {
	for i in 1 2 3 4; do
		nvme connect -t tcp -a $A -s $P -n $NQN --hostnqn=$HN --hostid=$HID -i 2 >/dev/null
		wait_for 20 nsdev $NQN
		dd if=$(nsdev $NQN) of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null
		nvme disconnect -n $NQN >/dev/null
		wait_for 10 kura_not nsdev $NQN
	done
}
check connect_cycles cycles
`)
	return b.String()
}

// nvmeChecks are the checks every nvmeScript must run.
var nvmeChecks = []string{"discover", "connect", "dev_appears", "two_io_queues", "size", "rw_4k", "rw_64k", "rw_1m", "rw_4m_split_by_mdts",
	"rw_unaligned_seek", "fio_verify", "flush", "discard", "write_zeroes", "id_ctrl_subnqn", "id_ns_size", "ext4", "pattern", "disconnect", "dev_gone", "connect_cycles"}
