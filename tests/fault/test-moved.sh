#!/usr/bin/env bash
# The patcher killed right after it moved a thread out of the bytes an entry jump
# displaces into their relocated copy (one SETREGS: inside the int3 window of init,
# entry-bp.c, the transition recorded and left for the next revert; or, where init stops
# every thread, transition-entry.c, before anything of the transition is written). The victim is
# tests/core's hot one: 16 threads in a tight loop over hot14(), whose first seven bytes
# are three instructions, so that at almost every stop some thread is strictly inside
# them. ptrace-kill.so (ULP_FAULT_MOVED_FROM) kills ulpctl right after the SETREGS that
# takes a thread from inside those bytes elsewhere; an apply that moved no thread is
# reverted and tried again. After each kill the victim must be alive, untraced, running
# the original only with no wrong result, status must read it, and a plain apply and
# revert must work.
#
# Usage: test-moved.sh  (env from meson: ULPCTL, VICTIM_HOT, PATCH_HOT, FAULTLIB)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/hot.sh"
VPID=
TRIALS=${FAULT_MOVED_TRIALS:-8}

ulpctl() { "$ULPCTL" --direct "$@"; }

"$VICTIM_HOT" 16 >"$LOG" 2>&1 &
VPID=$!
wait_line '^v1=' 5 || fail "victim did not start"
exe=$(readlink -f "$VICTIM_HOT")
base=$(awk -v p="$exe" '$6 == p && $3 == "00000000" { sub(/-.*/, "", $1); print $1; exit }' "/proc/$VPID/maps")
addr=$(nm "$VICTIM_HOT" | awk '$3 == "hot14" { print $1 }')
[ -n "$base" ] && [ -n "$addr" ] || fail "cannot find hot14 in the victim"
hot=$((0x$base + 0x$addr))
# strictly inside the seven displaced bytes
range=$(printf '%x-%x' $((hot + 1)) $((hot + 7)))

attempts=0 trials=0 lost=0 wrong=0
while [ $trials -lt "$TRIALS" ] && [ $attempts -lt $((TRIALS * 5)) ]; do
	attempts=$((attempts + 1))
	env LD_PRELOAD="$FAULTLIB" ULP_FAULT_MOVED_FROM="$range" "$ULPCTL" --direct apply \
		--timeout $((10 * SLOW)) -p "$VPID" "$PATCH_HOT" >"$WORK/apply.out" 2>&1
	rc=$?
	if [ $rc = 0 ]; then
		# no thread was inside: nothing moved, nothing killed
		out=$(ulpctl revert --timeout $((10 * SLOW)) -p "$VPID" hot-fix 2>&1) || fail "revert failed: $out"
		continue
	fi
	[ $rc = 137 ] || fail "the apply failed without being killed: $(cat "$WORK/apply.out")"
	trials=$((trials + 1))
	kill -0 "$VPID" 2>/dev/null || { lost=$((lost + 1)); fail "trial $trials: the victim died"; }
	victim_ok
	rises v1 || fail "trial $trials: the original does not run after the kill"
	stays v2 || { wrong=$((wrong + 1)); fail "trial $trials: the patch's version runs after the kill"; }
	out=$(ulpctl status -p "$VPID" 2>&1) || fail "trial $trials: status failed: $out"
	# An init without a stop of every thread records its transition before the int3
	# window it moves threads in (docs/stops.md): the next revert takes it over and
	# closes the window.
	if ulpctl status --json -p "$VPID" | grep '"state":"transition"' >/dev/null; then
		out=$(ulpctl revert --timeout $((10 * SLOW)) -p "$VPID" hot-fix 2>&1) ||
			fail "trial $trials: the revert taking the transition over failed: $out"
		stays v2 || fail "trial $trials: the patch's version runs after the revert"
	fi
	out=$(ulpctl apply --timeout $((10 * SLOW)) -p "$VPID" "$PATCH_HOT" 2>&1) ||
		fail "trial $trials: the next apply failed: $out"
	rises v2 || fail "trial $trials: the patch's version does not run after the next apply"
	out=$(ulpctl revert --timeout $((10 * SLOW)) -p "$VPID" hot-fix 2>&1) || fail "trial $trials: the revert failed: $out"
	rises v1 || fail "trial $trials: the original does not run after the revert"
	[ "$(count wrong)" = 0 ] || { wrong=$((wrong + 1)); fail "trial $trials: wrong results: $(count wrong)"; }
	! grep -q 'memfd:ulp-patch' "/proc/$VPID/maps" || fail "trial $trials: patch code left mapped after the revert"
	ok "trial $trials (apply $attempts): killed right after a thread was moved into the relocated copy"
done
echo "moved-thread kills: attempts=$attempts trials=$trials lost=$lost wrong=$wrong"
[ $trials -gt 0 ] || fail "no apply of $attempts moved a thread out of hot14's displaced bytes"
victim_ok
echo "PASS"
