#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A late object's pre_patch and post_patch when their driver is killed around the call
# (docs/fault-tolerance.md, "A late object's callbacks and a driver's death"): the victim
# loads liblatehold.so and ulp_apply_late() (transition-pending, as ulpd runs it) is
# killed with SIGKILL (tests/fault/ptrace-kill.so) at the moments that were left open:
#  1. right after each memory write from the area write before pre_patch's call, and
#     before post_patch's, to the SETREGS that starts it (the call's record, the frame):
#     the next run must run the callback that never started, once; before, a kill after
#     the mark and before the SETREGS left it never run;
#  2. with pre_patch refusing (returns 7), right after each ptrace call from its SETREGS
#     on and after each memory write that follows the call: no run may ever patch the
#     library, and the refusal is said once; before, a kill after the refusal returned
#     and before the entry was cleared made the next run patch it;
#  3. with pre_patch sleeping 4 s, right after the call's first resume: the next run
#     must not switch the library while pre_patch runs, and say why; once it returned,
#     the next run patches it; before, the next run switched at once (when it could
#     unwind the thread in the callback);
#  4. with post_patch sleeping 4 s, right after its call's first resume: no run calls it
#     again, neither while it runs nor after.
# Each time the victim lives, untraced, and the callbacks it printed are counted.
# Usage: test-call-windows.sh  (env from meson: ULPCTL, LATE_VICTIM, LATE_DIR,
# VICTIMS_DIR, PENDING, FAULTLIB)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/late-lib.sh"

# killed_run WHAT ENV...: transition-pending with the fault library and ENV, which must
# have been killed; the victim must live, untraced.
killed_run() {
	local what=$1 rc
	shift
	env LD_PRELOAD="$FAULTLIB" "$@" "$PENDING" "$VPID" >"$WORK/inj.out" 2>&1
	rc=$?
	[ $rc = 137 ] || fail "$what: not killed: exit $rc: $(cat "$WORK/inj.out")"
	kill -0 "$VPID" 2>/dev/null || fail "$what: the victim died"
	victim_ok
}
# next_run: transition-pending again; its exit in RC, its output in OUT.
next_run() { OUT=$("$PENDING" "$VPID" 2>&1); RC=$?; }
revert_ok() {
	local out
	out=$(ulpctl revert -p "$VPID" late-hold 2>&1) || fail "$1: the revert failed: $out"
	shows base 1 || fail "$1: base_value not reverted"
	victim_ok
}

# Where each call starts, from a run not killed: the memory writes before each SETREGS
# that starts a call (rax 0, right after the GETREGSET that saved the thread's context:
# the SETREGS that puts a context back may have rax 0 as well), and the writes of the
# whole run.
start_loaded
env LD_PRELOAD="$FAULTLIB" ULP_FAULT_LOG="$WORK/dry.log" ULP_FAULT_REQUEST=ANY ULP_FAULT_N=1000000 \
	"$PENDING" "$VPID" >"$WORK/dry.out" 2>&1 || fail "the run not killed failed: $(cat "$WORK/dry.out")"
mapfile -t CALLS < <(awk '/^MEMWRITE/ { n++; next } /^SETREGS 0 rax=0$/ && p ~ /^GETREGSET/ { print n } { p = $0 }' \
	"$WORK/dry.log")
# the ptrace calls from pre_patch's SETREGS to post_patch's, both counted
POST_CALL=$(awk '/^MEMWRITE/ { next } /^SETREGS 0 rax=0$/ && p ~ /^GETREGSET/ { s++ } s { n++ } s == 2 { print n; exit }
	{ p = $0 }' "$WORK/dry.log")
[ "${#CALLS[@]}" = 2 ] || fail "expected the calls of pre_patch and post_patch, found ${#CALLS[@]}"
WRITES=$(grep -c '^MEMWRITE' "$WORK/dry.log")
wait_for 2 eval '[ "$(cbs)" = "pre_patch post_patch " ]' || fail "the run not killed: callbacks $(cbs)"
stop_victim
echo "memory writes before pre_patch's call: ${CALLS[0]}, before post_patch's: ${CALLS[1]}, in all: $WRITES"

# 1. Killed before the call's SETREGS: the callback never started; the next run runs it.
trials=0
for call in 0 1; do
	name=$([ $call = 0 ] && echo pre_patch || echo post_patch)
	for ((n = CALLS[call] > 11 ? CALLS[call] - 11 : 1; n <= CALLS[call]; n++)); do
		what="killed after write $n, before $name's call"
		start_loaded
		killed_run "$what" ULP_FAULT_REQUEST=MEMWRITE ULP_FAULT_N=$n
		trials=$((trials + 1))
		[ "$(count "$name")" = 0 ] || fail "$what: $name ran before its SETREGS: $(cbs)"
		next_run
		[ "$RC" = 0 ] && [ "$OUT" = "patched 1 object(s) of late-hold" ] ||
			fail "$what: the next run: exit $RC: $OUT"
		shows hold 2 || fail "$what: hold_value not patched after the next run"
		wait_for 2 eval '[ "$(count post_patch)" -ge 1 ]'
		[ "$(cbs)" = "pre_patch post_patch " ] || fail "$what: callbacks $(cbs)"
		revert_ok "$what"
		ok "$what: callbacks $(cbs)"
		stop_victim
	done
done
echo "killed before a call: trials=$trials, each callback run once"

# 2. pre_patch refuses: whatever the kill, no run patches the library.
REFUSAL="the pre-patch callback of liblatehold.so (patch late-hold) refused (returned 7): its functions stay unpatched in process"
refusal_check() {
	local what=$1 first
	shows hold 1 || fail "$what: hold_value changed"
	# the thread left in the call finishes it by itself: until then the run waits for it
	wait_for 5 eval 'next_run; [[ "$OUT" != *" still runs in thread "* ]]' || fail "$what: the next run: $OUT"
	first=$OUT
	[ "$RC" = 1 ] || fail "$what: the next run: exit $RC: $OUT"
	[ "$OUT" = "$REFUSAL $VPID" ] || [ "$OUT" = "process $VPID has no patch waiting for an object to be loaded" ] ||
		fail "$what: the next run says: $OUT"
	next_run
	[ "$RC" = 1 ] && [ "$OUT" = "process $VPID has no patch waiting for an object to be loaded" ] ||
		fail "$what: the run after it: exit $RC: $OUT"
	# the library is never switched, pre_patch ran once and nothing else
	sleep 0.2
	[ "$(value_in hold)" = 1 ] || fail "$what: hold_value patched after its pre_patch refused"
	[ "$(cbs)" = "pre_patch " ] || fail "$what: callbacks $(cbs)"
	revert_ok "$what"
	[ "$(cbs)" = "pre_patch " ] || fail "$what: callbacks after the revert $(cbs)"
	ok "$what: the next run said: $first"
}
refused=0
for ((n = 1; ; n++)); do
	what="pre_patch refusing, killed after call $n from its SETREGS"
	start_loaded LATE_PRE_RET=7
	env LD_PRELOAD="$FAULTLIB" ULP_FAULT_AFTER_SYSCALL=0 ULP_FAULT_REQUEST=ANY ULP_FAULT_N=$n \
		"$PENDING" "$VPID" >"$WORK/inj.out" 2>&1
	rc=$?
	if [ $rc = 1 ]; then   # past the run's last call: the sweep is over
		[ "$(cat "$WORK/inj.out")" = "$REFUSAL $VPID" ] || fail "the refusal not killed: $(cat "$WORK/inj.out")"
		stop_victim
		break
	fi
	[ $rc = 137 ] || fail "$what: exit $rc: $(cat "$WORK/inj.out")"
	victim_ok
	wait_for 2 eval '[ "$(count pre_patch)" -ge 1 ]'
	refusal_check "$what"
	refused=$((refused + 1))
	stop_victim
done
[ "$refused" -gt 10 ] || fail "only $refused kills: the sweep missed the call"
for ((n = CALLS[0] + 1; n <= CALLS[0] + 6; n++)); do
	what="pre_patch refusing, killed after write $n, after its call"
	start_loaded LATE_PRE_RET=7
	killed_run "$what" ULP_FAULT_REQUEST=MEMWRITE ULP_FAULT_N=$n
	refusal_check "$what"
	refused=$((refused + 1))
	stop_victim
done
echo "pre_patch refusing: trials=$refused, the library never patched"

# 3. Killed while pre_patch runs: the next run waits for its return.
what="killed while pre_patch runs"
start_loaded LATE_PRE_SLOW=4 LATE_PRE_TELL=1
killed_run "$what" ULP_FAULT_AFTER_SYSCALL=0 ULP_FAULT_REQUEST=ANY ULP_FAULT_N=3
wait_for 2 eval '[ "$(count pre_patch)" = 1 ]' || fail "$what: pre_patch did not start: $(cbs)"
next_run
[ "$RC" = 1 ] || fail "$what: the next run did not wait for pre_patch: exit $RC: $OUT, callbacks $(cbs)"
[ "$(count 'pre_patch returns')" = 0 ] || fail "$what: pre_patch returned too early for this test"
[ "$OUT" = "the pre-patch callback of liblatehold.so (patch late-hold) still runs in thread $VPID of process $VPID: its functions are patched once it has returned" ] ||
	fail "$what: the next run says: $OUT"
[ "$(value_in hold)" = 1 ] || fail "$what: hold_value patched while pre_patch runs"
ok "$what: the next run said: $OUT"
wait_for 10 eval '[ "$(count "pre_patch returns")" = 1 ]' || fail "$what: pre_patch did not return: $(cbs)"
next_run
[ "$RC" = 0 ] && [ "$OUT" = "patched 1 object(s) of late-hold" ] || fail "$what: the run after its return: exit $RC: $OUT"
shows hold 2 || fail "$what: hold_value not patched after pre_patch returned"
wait_for 2 eval '[ "$(count post_patch)" -ge 1 ]'
[ "$(cbs)" = "pre_patch pre_patch returns post_patch " ] || fail "$what: callbacks $(cbs)"
revert_ok "$what"
ok "$what: once it returned, the next run patched the library: callbacks $(cbs)"
stop_victim

# 4. Killed while post_patch runs: it counts as run, and runs once.
what="killed while post_patch runs"
start_loaded LATE_POST_SLOW=4
killed_run "$what" ULP_FAULT_AFTER_SYSCALL=0 ULP_FAULT_REQUEST=ANY ULP_FAULT_N=$((POST_CALL + 2))
wait_for 2 eval '[ "$(count post_patch)" = 1 ]' || fail "$what: post_patch did not start: $(cbs)"
# (the victim's one thread runs post_patch: it prints nothing else until it returns)
next_run
[ "$(count 'post_patch returns')" = 0 ] || fail "$what: post_patch returned too early for this test"
[ "$RC" = 1 ] && [ "$OUT" = "no pending object is loaded yet" ] ||
	fail "$what: the next run while post_patch runs: exit $RC: $OUT"
wait_for 10 eval '[ "$(count "post_patch returns")" = 1 ]' || fail "$what: post_patch did not return: $(cbs)"
shows hold 2 || fail "$what: hold_value not patched"
next_run
next_run
[ "$RC" = 1 ] && [ "$OUT" = "no pending object is loaded yet" ] || fail "$what: the runs after its return: exit $RC: $OUT"
[ "$(cbs)" = "pre_patch post_patch post_patch returns " ] || fail "$what: callbacks $(cbs)"
revert_ok "$what"
[ "$(cbs)" = "pre_patch post_patch post_patch returns pre_unpatch post_unpatch " ] ||
	fail "$what: callbacks after the revert: $(cbs)"
ok "$what: it ran once: callbacks $(cbs)"
stop_victim
echo "PASS"
