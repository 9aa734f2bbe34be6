#!/usr/bin/env bash
# Code left mapped by a killed driver is unmapped only once no thread may run it
# (docs/control-block.md, "Code left mapped by a killed driver"). ulpctl is killed with
# SIGKILL while the patch's pre-patch callback runs: the callback takes the victim's
# shared_lock and holds it until the victim gets SIGUSR1 (patch-lock.c), so its thread
# sits in the patch's code, and it finishes by itself once released. The apply of another
# patch meanwhile must keep that code (the callback's return addresses are on its
# thread's stack) and status must show it; after the release the victim must live and
# the next apply must unmap it.
# Usage: test-leftover.sh  (env from meson: ULPCTL, LOCK_VICTIM, LOCK_PATCH, PLAIN_PATCH)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=

ulpctl() { "$ULPCTL" --direct "$@"; }
last() { grep -E '^ticks=' "$LOG" | tail -n 1; }
val() { last | tr ' ' '\n' | sed -n "s/^$1=//p"; }
ticking() {
	local a
	a=$(val ticks)
	wait_for 5 eval '[ "$(val ticks)" -gt "'"${a:-0}"'" ]'
}
stalled() {
	local a
	a=$(val ticks); sleep 0.3
	[ "$(val ticks)" = "$a" ]
}
lock_maps() { grep -c 'memfd:ulp-patch:fault-lock' "/proc/$VPID/maps"; }

"$LOCK_VICTIM" >"$LOG" 2>&1 &
VPID=$!
wait_for 10 grep -qs '^ticks=' "$LOG" || fail "victim did not start"
ticking || fail "the victim's workers do not tick"

# The driver dies while the callback holds the lock.
"$ULPCTL" --direct apply -p "$VPID" --callback-timeout $((60000 * SLOW)) "$LOCK_PATCH" >"$WORK/apply.out" 2>&1 &
DRIVER=$!
PIDS+=("$DRIVER")
wait_for 20 stalled || fail "the callback did not take the lock: $(cat "$WORK/apply.out")"
kill -9 "$DRIVER"
wait "$DRIVER" 2>/dev/null
victim_ok
out=$(ulpctl status -p "$VPID" 2>&1) || fail "status failed: $out"
grep -qE '^  fault-lock: unpatched, its code still mapped(, applied .*)?$' <<<"$out" || fail "status does not show the code: $out"

# Another apply while the callback still runs in that code: the code stays. Its
# transition waits for the callback's thread (its stack goes through the frame of a
# remote call, which the unwinder does not take as reliable) until it is released.
"$ULPCTL" --direct apply -p "$VPID" --timeout $((60 * SLOW)) "$PLAIN_PATCH" >"$WORK/plain.out" 2>&1 &
PLAIN=$!
PIDS+=("$PLAIN")
in_transition() { ulpctl status -p "$VPID" 2>/dev/null | grep -E '^  fault-plain: transition(, applied .*)?$' >/dev/null; }
wait_for 30 in_transition || fail "the apply of fault-plain did not start its transition: $(cat "$WORK/plain.out"; ulpctl status -p "$VPID" 2>&1)"
# Alive; not victim_ok: the apply still runs and stops its threads now and then.
kill -0 "$VPID" 2>/dev/null || fail "the victim died during the apply of fault-plain"
[ "$(lock_maps)" -ge 1 ] || fail "the code the callback runs was unmapped"
out=$(ulpctl status -p "$VPID" 2>&1) || fail "status failed: $out"
grep -qE '^  fault-lock: unpatched, its code still mapped(, applied .*)?$' <<<"$out" || fail "status no longer shows the kept code: $out"
ok "the apply kept the code a callback left by a killed driver still runs"

# Released: the callback returns by itself, the workers take the lock again, the
# transition completes.
kill -USR1 "$VPID"
wait "$PLAIN" || fail "the apply of fault-plain failed: $(cat "$WORK/plain.out")"
ticking || fail "the workers did not take the lock again"
victim_ok
wait_for 5 eval '[ "$(val value)" = 2 ]' || fail "the victim does not run fault-plain's value(): $(last)"

# The next apply unmaps it.
out=$(ulpctl revert -p "$VPID" fault-plain 2>&1) || fail "the revert failed: $out"
wait_for 5 eval '[ "$(val value)" = 1 ]' || fail "value() is not back to version 1: $(last)"
out=$(ulpctl apply -p "$VPID" "$PLAIN_PATCH" 2>&1) || fail "the second apply of fault-plain failed: $out"
[ "$(lock_maps)" = 0 ] || fail "the code left by the killed driver is still mapped: $(grep ulp-patch "/proc/$VPID/maps")"
out=$(ulpctl status -p "$VPID" 2>&1)
! grep -q 'fault-lock' <<<"$out" || fail "fault-lock is still in status: $out"
out=$(ulpctl revert -p "$VPID" fault-plain 2>&1) || fail "the last revert failed: $out"
ticking || fail "the workers stopped"
victim_ok
ok "once the callback returned, the next apply unmapped its code"
echo "PASS"
