#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A late object's pre_patch and post_patch run once per load, even when their driver is killed
# (docs/late-callbacks.md): the victim loads liblatehold.so, and ulp_apply_late()
# (transition-pending, as ulpd runs it) is killed with SIGKILL right after each of its
# ptrace calls from the SETREGS that starts the pre_patch call on (ptrace-kill.so,
# ULP_FAULT_AFTER_SYSCALL=0: a call's SETREGS has rax 0) to its end. The thread then runs
# the callback by itself. Each time the victim must be alive and untraced, the next run
# must end the patching of the library (or find it ended), and the victim must have seen
# pre_patch exactly once, post_patch exactly once (a kill between the switch and its call
# leaves the object POSTPENDING: the next run calls it), hold_value patched; the revert
# must bring both functions back. Before the block recorded pre_patch as run before its
# call, a kill after it returned and before that record made the next run call it a
# second time; before POSTPENDING, a kill between the switch and post_patch's call left
# post_patch never run (7 of 50 kills).
# Usage: test-prepatch-kill.sh  (env from meson: ULPCTL, LATE_VICTIM, LATE_DIR,
# VICTIMS_DIR, PENDING, FAULTLIB)
# Knob: PREPATCH_STRIDE (default 1: every call).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/late-lib.sh"
STRIDE=${PREPATCH_STRIDE:-1}


trials=0 lost=0 twice=0 post_lost=0
for ((n = 1; ; n += STRIDE)); do
	what="killed after call $n from pre_patch's"
	start_loaded
	env LD_PRELOAD="$FAULTLIB" ULP_FAULT_AFTER_SYSCALL=0 ULP_FAULT_REQUEST=ANY ULP_FAULT_N=$n \
		"$PENDING" "$VPID" >"$WORK/inj.out" 2>&1
	rc=$?
	if [ $rc = 0 ]; then   # past the run's last call: the sweep is over
		[ "$(cbs)" = "pre_patch post_patch " ] || fail "the run not killed: callbacks $(cbs)"
		stop_victim
		break
	fi
	[ $rc = 137 ] || fail "$what: exit $rc: $(cat "$WORK/inj.out")"
	trials=$((trials + 1))
	kill -0 "$VPID" 2>/dev/null || { lost=$((lost + 1)); fail "$what: the victim died"; }
	victim_ok
	out=$(ulpctl status -p "$VPID" 2>&1) || fail "$what: status failed: $out"
	"$PENDING" "$VPID" >"$WORK/next.out" 2>&1
	rc=$?
	[ $rc = 0 ] || { [ $rc = 1 ] && grep -qx 'no pending object is loaded yet' "$WORK/next.out"; } ||
		fail "$what: the next run: exit $rc: $(cat "$WORK/next.out")"
	shows hold 2 || fail "$what: hold_value not patched after the next run"
	# the thread killed inside a call finishes it by itself: give it the time to print
	wait_for 2 eval '[ "$(count pre_patch)" -ge 1 ]'
	[ "$(count pre_patch)" = 1 ] || { twice=$((twice + 1)); fail "$what: pre_patch ran $(count pre_patch) times: $(cbs)"; }
	wait_for 2 eval '[ "$(count post_patch)" -ge 1 ]'
	[ "$(count post_patch)" -le 1 ] || fail "$what: post_patch ran $(count post_patch) times: $(cbs)"
	[ "$(count post_patch)" = 1 ] || { post_lost=$((post_lost + 1)); fail "$what: post_patch never ran: $(cbs)"; }
	out=$(ulpctl revert -p "$VPID" late-hold 2>&1) || fail "$what: the revert failed: $out"
	shows hold 1 && shows base 1 || fail "$what: the revert did not restore both"
	victim_ok
	ok "$what: callbacks $(cbs)"
	stop_victim
done
echo "pre_patch kills: trials=$trials lost=$lost twice=$twice post_patch_not_run=$post_lost"
[ "$trials" -gt 10 ] || fail "only $trials kills: the sweep missed the run"
echo "PASS"
