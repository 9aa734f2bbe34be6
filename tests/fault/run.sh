#!/usr/bin/env bash
# Fault injection (issue "Killing the patcher kills the target"): ulpctl --direct is
# killed with SIGKILL right after its N-th ptrace call of one request (ptrace-kill.so,
# LD_PRELOAD), or after a random delay, during an apply or a revert of a patch with
# callbacks. After each kill the victim (transition victim, 4 workers checking their own
# consistency) must be alive, untraced, not stopped and making progress; a plain
# `ulpctl --direct status` must read it; revert/apply must finish or take over; then the
# victim must run exactly the version it should and never have mixed versions.
#
# Usage: run.sh requests|random|writes   (env from meson: ULPCTL, VICTIM, PATCH, FAULTLIB)
# writes: killed right after the N-th write of the target's memory (control block
#        records, thread table, entries), every N of a revert and every ULP_FAULT_WSTEP-th
#        (default 3) of an apply: the moments between two writes of the control block.
# Knobs: ULP_FAULT_K (calls per request, default 4), ULP_FAULT_KR (for revert, default 2),
#        ULP_FAULT_REQUESTS (list), ULP_FAULT_SPREAD (the ANY trials' step, default 20: the
#        N-th ptrace call of any kind for N = 10, 30, 50..., spread over a whole
#        operation), ULP_FAULT_AMAX / ULP_FAULT_RMAX (the last N of the apply / revert ANY
#        trials, default 250 / 290), ULP_FAULT_TRIALS (random mode, default 24),
#        ULP_FAULT_KEEP_GOING=1 (count failures instead of stopping at the first).
# Prints one line per trial and a summary:
#   trials=N killed=N lost=N wrong=N unrecovered=N
set -uo pipefail

MODE=$1
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=

K=${ULP_FAULT_K:-4}
KR=${ULP_FAULT_KR:-2}
# What the patcher writes with, or resumes with: the moments that matter.
REQUESTS=${ULP_FAULT_REQUESTS:-SEIZE INTERRUPT SETREGS SETREGSET SETSIGMASK SYSCALL CONT DETACH}
SPREAD=${ULP_FAULT_SPREAD:-20}
TRIALS=${ULP_FAULT_TRIALS:-24}
trials=0 killed=0 lost=0 wrong=0 unrecovered=0 generation=0 kmsg=0

ulpctl() { "$ULPCTL" --direct "$@"; }

start_victim() {
	generation=$((generation + 1))
	LOG=$WORK/victim.$generation.log
	: >"$LOG"   # emptied before: the job truncates it only once it runs
	"$VICTIM" -n 4 >"$LOG" 2>&1 &
	VPID=$!
	wait_for 10 grep -qs '^v1=' "$LOG" || fail "victim did not start"
}

# The state of the test patch in the victim: patched, transition, or none.
patch_state() {
	local out
	out=$(ulpctl status --json -p "$VPID" 2>"$WORK/status.err") || { echo "error"; return 1; }
	echo "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
s = [p["state"] for q in d["processes"] for p in q["patches"] if p["name"] == "fault" and p["state"] != "unpatched"]
print(s[0] if s else "none")'
}

# alive: the victim exists, is not a zombie, stopped or traced, and makes progress.
alive() {
	local st
	st=$(awk '{print $3}' "/proc/$VPID/stat" 2>/dev/null)
	case "$st" in
	""|Z|X) why="died"; return 1 ;;
	t|T) why="left stopped ($st)"; return 1 ;;
	esac
	grep -q 'TracerPid:.0$' "/proc/$VPID/status" || { why="left traced"; return 1; }
	local a b
	fresh || { why="prints nothing"; return 1; }
	a=$(( $(now v1) + $(now v2) ))
	wait_for 5 eval 'b=$(( $(now v1) + $(now v2) )); [ "$b" -gt "$a" ]' || { why="no progress"; return 1; }
	return 0
}

# lose: the victim is gone or broken; says how it ended and starts a new one.
lose() {
	local how=$why
	kill -9 "$VPID" 2>/dev/null
	wait "$VPID" 2>/dev/null
	local rc=$?
	[ "$how" = died ] && how="died (exit status $rc: $( [ $rc -gt 128 ] && kill -l $((rc - 128)) ))"
	echo "  LOST: victim $how; last line: $(last_tick)"
	# The kernel's own line on a fault (it names the thread, not the process: the lines
	# since the trial began) says where.
	dmesg 2>/dev/null | tail -n +"$((kmsg + 1))" | grep -aE 'traps:|segfault|general protection' |
		tail -n 3 | sed 's/^/  kernel: /'
	lost=$((lost + 1))
	start_victim
}

# settle WANT: brings the victim to WANT (patched or none) with plain commands.
settle() {
	local want=$1 st
	st=$(patch_state) || { echo "  status failed: $(cat "$WORK/status.err")"; return 1; }
	note="$st"
	if [ "$st" = transition ] || { [ "$st" = patched ] && [ "$want" = none ]; }; then
		ulpctl revert --timeout 30 -p "$VPID" fault >/dev/null 2>"$WORK/op.err" ||
			{ echo "  revert failed: $(cat "$WORK/op.err")"; return 1; }
		note="$note>revert"
		st=none
	fi
	if [ "$st" = none ] && [ "$want" = patched ]; then
		ulpctl apply --timeout 30 -p "$VPID" "$PATCH" >/dev/null 2>"$WORK/op.err" ||
			{ echo "  apply failed: $(cat "$WORK/op.err")"; return 1; }
		note="$note>apply"
	fi
	return 0
}

# check_version WANT: the right version runs, the other does not, nothing mixed.
check_version() {
	local on=v1 off=v2
	[ "$1" = patched ] && on=v2 off=v1
	{ fresh && rises "$on" 5; } || { echo "  WRONG: $on does not run ($(last_tick))"; return 1; }
	steady "$off" || { echo "  WRONG: $off still runs ($(last_tick))"; return 1; }
	[ "$(now mixed)" = 0 ] || { echo "  WRONG: mixed=$(now mixed)"; return 1; }
}

# trial KIND DESC CMD...: KIND apply|revert; CMD runs the operation that gets killed.
trial() {
	local kind=$1 desc=$2 rc start end
	shift 2
	local before=none after=patched
	[ "$kind" = revert ] && before=patched after=none
	settle "$before" >/dev/null || fail "cannot prepare the trial ($kind $desc)"
	trials=$((trials + 1))
	kmsg=$(dmesg 2>/dev/null | wc -l)
	"$@" >/dev/null 2>"$WORK/inj.err"
	rc=$?
	local what="completed"
	[ $rc = 137 ] && { what="killed"; killed=$((killed + 1)); }
	[ $rc != 137 ] && [ $rc != 0 ] && what="exit $rc: $(head -n 1 "$WORK/inj.err")"
	if ! alive; then
		echo "$kind $desc: $what"
		lose
		return 1
	fi
	if ! settle "$after"; then
		echo "$kind $desc: $what"
		unrecovered=$((unrecovered + 1))
		return 1
	fi
	if ! check_version "$after"; then
		echo "$kind $desc: $what, $note"
		wrong=$((wrong + 1))
		return 1
	fi
	echo "$kind $desc: $what, victim ok, $note"
	return 0
}

injected() {
	env LD_PRELOAD="$FAULTLIB" ULP_FAULT_REQUEST="$1" ULP_FAULT_N="$2" "$ULPCTL" --direct "${@:3}"
}

# killed_after US CMD...: runs CMD, which SIGKILLs itself US microseconds after it
# started (a timer armed by ptrace-kill.so as it loads: exact where a kill from outside
# would land late on a loaded machine).
killed_after() {
	local us=$1
	shift
	env LD_PRELOAD="$FAULTLIB" ULP_FAULT_DELAY_US="$us" "$@"
}

failures() { [ "${ULP_FAULT_KEEP_GOING:-0}" = 1 ] || { summary; exit 1; }; }
summary() {
	echo "trials=$trials killed=$killed lost=$lost wrong=$wrong unrecovered=$unrecovered"
}

start_victim
case $MODE in
requests)
	for req in $REQUESTS; do
		for ((n = 1; n <= K; n++)); do
			trial apply "$req#$n" injected "$req" "$n" apply --timeout 30 -p "$VPID" "$PATCH" || failures
		done
		for ((n = 1; n <= KR; n++)); do
			trial revert "$req#$n" injected "$req" "$n" revert --timeout 30 -p "$VPID" fault || failures
		done
	done
	# An apply makes about 250 ptrace calls here, a revert 120 (stop-all init) to 270
	# (init without a stop: three int3 windows, the seal's look, the callbacks).
	for ((n = 10; n <= ${ULP_FAULT_AMAX:-250}; n += SPREAD)); do
		trial apply "ANY#$n" injected ANY "$n" apply --timeout 30 -p "$VPID" "$PATCH" || failures
	done
	for ((n = ${ULP_FAULT_RMIN:-10}; n <= ${ULP_FAULT_RMAX:-290}; n += SPREAD)); do
		trial revert "ANY#$n" injected ANY "$n" revert --timeout 30 -p "$VPID" fault || failures
	done
	;;
random)
	# Delays spread over a whole operation: measured on this machine, now.
	settle none >/dev/null
	t0=$(date +%s%N); ulpctl apply -p "$VPID" "$PATCH" >/dev/null; t1=$(date +%s%N)
	span=$(( (t1 - t0) / 1000 ))
	[ $span -gt 2000000 ] && span=2000000
	echo "ulpctl apply runs $span us here: kills drawn from 0..$span us"
	for ((i = 0; i < TRIALS; i++)); do
		us=$(( (RANDOM * 32768 + RANDOM) % span ))
		if ((i % 2 == 0)); then
			trial apply "after ${us}us" killed_after "$us" "$ULPCTL" --direct apply --timeout 30 -p "$VPID" "$PATCH" || failures
		else
			trial revert "after ${us}us" killed_after "$us" "$ULPCTL" --direct revert --timeout 30 -p "$VPID" fault || failures
		fi
	done
	;;
writes)
	# How many writes each operation makes here, counted by the library's log.
	settle none >/dev/null
	count=$WORK/writes.log
	rm -f "$count"
	env LD_PRELOAD="$FAULTLIB" ULP_FAULT_LOG="$count" "$ULPCTL" --direct apply -p "$VPID" "$PATCH" >/dev/null ||
		fail "the counting apply failed"
	wa=$(grep -c '^MEMWRITE' "$count")
	rm -f "$count"
	env LD_PRELOAD="$FAULTLIB" ULP_FAULT_LOG="$count" "$ULPCTL" --direct revert -p "$VPID" fault >/dev/null ||
		fail "the counting revert failed"
	wr=$(grep -c '^MEMWRITE' "$count")
	echo "an apply writes the target's memory $wa times here, a revert $wr times"
	[ "$wa" -gt 0 ] && [ "$wr" -gt 0 ] || fail "no write counted: the library does not see them"
	for ((n = 1; n <= wr; n++)); do
		trial revert "MEMWRITE#$n" injected MEMWRITE "$n" revert --timeout 30 -p "$VPID" fault || failures
	done
	for ((n = 1; n <= wa; n += ${ULP_FAULT_WSTEP:-3})); do
		trial apply "MEMWRITE#$n" injected MEMWRITE "$n" apply --timeout 30 -p "$VPID" "$PATCH" || failures
	done
	;;
*)
	echo "unknown mode $MODE" >&2
	exit 2
	;;
esac
summary
[ $lost = 0 ] && [ $wrong = 0 ] && [ $unrecovered = 0 ]
