#!/usr/bin/env bash
# The patcher killed while it holds a thread stopped for the trap of an int3 of an int3
# window (init without a stop of every thread, ULP_NOSTOP_INIT=1; docs/stops.md, "A trap
# is never held"). The victim is tests/core's hot one: 16 threads in a tight loop over
# hot14(), so that threads run into the window's int3 all the time and some are stopped
# for their SIGTRAP. A revert is killed (its entries hold a jump: one byte past the int3
# is the middle of the jump's displacement):
#   sigtrap  right after the first GETSIGINFO of the revert, i.e. while a thread is in a
#            signal-delivery-stop (the first such stop is a trapped thread's here). Before,
#            the wait had taken the report by then, the kernel had forgotten the signal,
#            and the thread ran on from one byte past the int3: SIGILL.
#   untrap   right after the SETREGS that puts such a thread back on its int3, before its
#            report is taken: its SIGTRAP then reaches the guard with the PC on the int3,
#            which the guard sends back to it (x86_64/sigtrap.c).
# A revert that met no such stop completes; the patch is applied again and the revert
# tried again. After each kill the victim must be alive, untraced, give no wrong
# result, and a plain revert and apply must work.
#
# Usage: test-trapped.sh  (env from meson: ULPCTL, VICTIM_HOT, PATCH_HOT, FAULTLIB)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/hot.sh"
VPID=
TRIALS=${FAULT_TRAPPED_TRIALS:-1}
export ULP_NOSTOP_INIT=1

ulpctl() { "$ULPCTL" --direct "$@"; }
state() {
	ulpctl status --json -p "$VPID" | python3 -c '
import json, sys
d = json.load(sys.stdin)
s = [p["state"] for q in d["processes"] for p in q["patches"] if p["name"] == "hot-fix" and p["state"] != "unpatched"]
print(s[0] if s else "none")'
}
# patched: the patch applied and running, whatever a killed revert left
patched() {
	local st out
	st=$(state) || fail "status failed"
	if [ "$st" = transition ]; then
		out=$(ulpctl revert --timeout $((10 * SLOW)) -p "$VPID" hot-fix 2>&1) ||
			fail "the revert taking the transition over failed: $out"
		st=none
	fi
	if [ "$st" = none ]; then
		out=$(ulpctl apply --timeout $((10 * SLOW)) -p "$VPID" "$PATCH_HOT" 2>&1) || fail "apply failed: $out"
	fi
	rises v2 || fail "the patch's version does not run"
}

"$VICTIM_HOT" 16 >"$LOG" 2>&1 &
VPID=$!
wait_line '^v1=' 5 || fail "victim did not start"

total=0
for kind in sigtrap untrap; do
	attempts=0 trials=0
	while [ $trials -lt "$TRIALS" ] && [ $attempts -lt $((TRIALS * 30)) ]; do
		attempts=$((attempts + 1))
		patched
		if [ $kind = sigtrap ]; then
			knob=(ULP_FAULT_REQUEST=GETSIGINFO ULP_FAULT_N=1)
		else
			knob=(ULP_FAULT_UNTRAP=1)
		fi
		env LD_PRELOAD="$FAULTLIB" "${knob[@]}" "$ULPCTL" --direct revert --timeout $((10 * SLOW)) \
			-p "$VPID" hot-fix >"$WORK/revert.out" 2>&1
		rc=$?
		[ $rc = 0 ] && continue   # no thread was stopped for a trap: nothing killed
		[ $rc = 137 ] || fail "$kind: the revert failed without being killed: $(cat "$WORK/revert.out")"
		trials=$((trials + 1))
		st=$(awk '{print $3}' "/proc/$VPID/stat" 2>/dev/null)
		if [ -z "$st" ] || [ "$st" = Z ]; then
			wait "$VPID"
			rc=$?
			fail "$kind trial $trials: the victim died (exit status $rc: $(kill -l $((rc - 128)) 2>/dev/null))" \
				"$(dmesg 2>/dev/null | grep -a 'core-victim-h' | tail -n 1)"
		fi
		victim_ok
		rises v1 || rises v2 || fail "$kind trial $trials: hot14 is no longer called after the kill"
		out=$(ulpctl status -p "$VPID" 2>&1) || fail "$kind trial $trials: status failed: $out"
		patched
		out=$(ulpctl revert --timeout $((10 * SLOW)) -p "$VPID" hot-fix 2>&1) ||
			fail "$kind trial $trials: the revert failed: $out"
		rises v1 || fail "$kind trial $trials: the original does not run after the revert"
		[ "$(count wrong)" = 0 ] || fail "$kind trial $trials: wrong results: $(count wrong)"
		ok "$kind trial $trials (revert $attempts): killed while a thread was stopped for its trap"
	done
	echo "$kind: attempts=$attempts trials=$trials"
	[ $trials -gt 0 ] || fail "$kind: no revert of $attempts met a thread stopped for a trap"
	total=$((total + trials))
done
victim_ok
echo "PASS ($total kills)"
