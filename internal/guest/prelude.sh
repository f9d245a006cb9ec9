# Kura guest test prelude: sourced by every /test.sh before the test body.
# Each check prints one line the Go side parses:
#   KURA-CHECK: PASS <name>
#   KURA-CHECK: FAIL <name> (rc=N)   (preceded by the last output lines, prefixed "  | ")
KURA_FAILED=0

# check NAME CMD [ARGS...]: run CMD, record the result, never exit.
check() {
	_n=$1
	shift
	_t0=$(cut -d' ' -f1 /proc/uptime)
	if _out=$("$@" 2>&1); then
		_t1=$(cut -d' ' -f1 /proc/uptime)
		[ -n "$_out" ] && echo "$_out" | tail -5 | sed 's/^/  | /'
		echo "KURA-CHECK: PASS $_n ($(awk -v a="$_t0" -v b="$_t1" 'BEGIN{printf "%.1f", b-a}')s)"
	else
		_rc=$?
		echo "$_out" | tail -25 | sed 's/^/  | /'
		echo "KURA-CHECK: FAIL $_n (rc=$_rc)"
		KURA_FAILED=$((KURA_FAILED + 1))
	fi
}

# check_fails NAME CMD...: the command must fail.
check_fails() {
	_n=$1
	shift
	check "$_n" kura_not "$@"
}
kura_not() { ! "$@"; }

# must NAME CMD...: like check, but stop the test when it fails.
must() {
	_before=$KURA_FAILED
	check "$@"
	if [ "$KURA_FAILED" != "$_before" ]; then
		echo "KURA-GUEST: stopping after failed prerequisite $1"
		exit 1
	fi
}

# wait_for SECONDS CMD...: retry CMD every 0.2 s until it succeeds or time runs out.
wait_for() {
	_deadline=$(($(cut -d. -f1 /proc/uptime) + $1))
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$(cut -d. -f1 /proc/uptime)" -ge "$_deadline" ] && return 1
		sleep 0.2
	done
}

# value NAME VALUE: report a value to the Go side (guest.Values).
# It writes to the console directly, so it works inside a check.
value() { echo "KURA-VALUE: $1=$2" > /dev/console; }

kura_finish() {
	if [ "$KURA_FAILED" != 0 ]; then
		echo "KURA-GUEST: $KURA_FAILED check(s) failed"
		exit 1
	fi
	exit 0
}
