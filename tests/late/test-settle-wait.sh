#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A revert that meets a late object's switch left half done by a killed driver (its
# records published, its entries not written) ends that switch as a step of its own,
# within its deadline (docs/late-callbacks.md): while a thread of the victim is inside
# one of the object's functions, each step tries once and the revert waits; once the
# thread is out it ends the switch and the revert goes through. A revert whose deadline
# comes first fails with its reason, in about that time.
#
# The half-done switch: transition-pending (ulp_apply_late) killed right after the write
# that copies the new records into place (control-killhook.so, the last header write of a
# plain run's log). The thread in the way: the victim unloads liblatehold.so and loads it
# again (at the same address) with $HOLD_FILE present, so that a thread waits in
# hold_wait() while the file exists.
# Through ulpd (root only), the same wait must not block ulpd: while the revert waits for
# the thread, another client's status requests are answered, each within a second times
# the slowdown of one answered before.
# Usage: test-settle-wait.sh  (env from meson: ULPD, ULPCTL, LATE_VICTIM, LATE_DIR,
# VICTIMS_DIR, PENDING, KILLHOOK)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/late-lib.sh"
HOLD=$WORK/hold

hooked() { env LD_PRELOAD="$KILLHOOK" "$@" >"$WORK/hooked.out" 2>&1; }
lib_base() { awk '/liblatehold\.so/ { sub(/-.*/, "", $1); print $1; exit }' "/proc/$VPID/maps"; }

# The writes of a plain run, and the header write of the copy of the new records into
# place, before the entry jumps: the one header write (4096 bytes) inside another
# write's seqlock bracket (after the records, not after a 20-byte begin), as the
# callbacks' records write the header too.
start_loaded HOLD_FILE="$HOLD"
hooked ULP_WRITE_LOG="$WORK/writes" "$PENDING" "$VPID" || fail "the plain run failed: $(cat "$WORK/hooked.out")"
copied=$(awk '$3 == 4096 && prev != 20 { k = $1 } { prev = $3 } END { print k }' "$WORK/writes")
[ -n "$copied" ] || fail "no header write in the plain run: $(cat "$WORK/writes")"
stop_victim

# half_done: a victim whose switch is half done, with a thread in hold_wait().
half_done() {
	start_loaded HOLD_FILE="$HOLD"
	hooked ULP_KILL_AFTER_WRITE="$copied" "$PENDING" "$VPID"
	[ $? = 137 ] || fail "not killed after write $copied: $(cat "$WORK/hooked.out")"
	shows hold 1 || fail "hold_value patched before its entry was written"
	ulpctl status -p "$VPID" 2>&1 | grep 'liblatehold.so:hold_value' >/dev/null || fail "the records were not published"
	local at
	at=$(lib_base)
	touch "$HOLD"
	kill -USR1 "$VPID"
	shows hold -1 || fail "liblatehold.so not unloaded"
	kill -HUP "$VPID"
	shows loads 2 || fail "liblatehold.so not loaded again"
	[ "$(lib_base)" = "$at" ] || skip "liblatehold.so was loaded again at another address ($(lib_base), was $at): the records no longer match it"
}

# A deadline that comes first: the revert fails with its reason, in about its time.
half_done
t0=${EPOCHREALTIME/./}
# (its last try may have met a stop slower than the time left, on a loaded machine)
expect_refusal "the revert with a thread in the way" \
	'^ulpctl: .*(threads keep running in the functions to patch \(.*hold_wait.*\)|cannot stop every thread of process [0-9]+: .*); try again$' \
	"$ULPCTL" --direct revert --timeout 2 -p "$VPID" late-hold
ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
[ "$ms" -ge 1500 ] || fail "the revert gave up after $ms ms, before its 2 s deadline"
[ "$ms" -le $((2000 + 3000 * SLOW)) ] || fail "the revert took $ms ms, past its 2 s deadline"
shows hold 1 || fail "hold_value changed by the refused revert"
ok "a revert meeting the half-done switch with a thread in the way fails at its deadline ($ms ms)"

# The thread leaves within the deadline: the revert waits for it, then goes through.
(sleep $((3 * SLOW)); rm -f "$HOLD") &
PIDS+=($!)
t0=${EPOCHREALTIME/./}
out=$(ulpctl revert --timeout $((30 * SLOW)) -p "$VPID" late-hold 2>&1) ||
	fail "the revert failed though the thread left in time: $out"
ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
[ "$ms" -ge 2500 ] || fail "the revert went through in $ms ms while the thread was in the way"
[ ! -e "$HOLD" ] || fail "the revert went through while the thread was in the way"
shows hold 1 && shows base 1 || fail "the revert did not restore both functions"
! ulpctl status -p "$VPID" 2>&1 | grep 'late-hold' >/dev/null || fail "the patch is still listed after the revert"
victim_ok
ok "the revert waited $ms ms for the thread, ended the switch and reverted"
stop_victim

# Through ulpd: the revert waits in steps, and ulpd answers status requests meanwhile.
[ "$EUID" = 0 ] || { echo "the case through ulpd is left out: ulpd needs root"; echo "PASS"; exit 0; }
export ULP_SOCKET=$WORK/ulpd.sock
# --no-recover: this ulpd adopts no process, so its own look at loaded libraries never
# ends the half-done switch; only the revert does.
"$ULPD" --no-recover --patch-dir "" --debug --socket "$ULP_SOCKET" --state-dir "$WORK/state" \
	>"$WORK/ulpd.log" 2>&1 &
PIDS+=($!)
wait_for 10 test -S "$ULP_SOCKET" || fail "ulpd did not start"
fail_details() { echo "--- ulpd log"; tail -n 30 "$WORK/ulpd.log"; }
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
timed_status() {
	local t0
	t0=$(now_ms)
	"$ULPCTL" status -p "$VPID" >/dev/null 2>&1 || { echo 999999; return; }
	echo $(( $(now_ms) - t0 ))
}
half_done
base=$(timed_status)
(sleep $((3 * SLOW)); rm -f "$HOLD") &
PIDS+=($!)
t0=$(now_ms)
"$ULPCTL" revert --timeout $((30 * SLOW)) -p "$VPID" late-hold >"$WORK/revert.out" 2>&1 &
rpid=$!
n=0 worst=0
while kill -0 "$rpid" 2>/dev/null; do
	ms=$(timed_status)
	kill -0 "$rpid" 2>/dev/null && [ -e "$HOLD" ] && n=$((n + 1))
	[ "$ms" -gt "$worst" ] && worst=$ms
	sleep 0.1
done
wait "$rpid" || fail "the revert through ulpd failed though the thread left in time: $(cat "$WORK/revert.out")"
ms=$(( $(now_ms) - t0 ))
[ ! -e "$HOLD" ] || fail "the revert through ulpd went through while the thread was in the way"
[ "$n" -ge 2 ] || fail "only $n status answers while the revert through ulpd waited"
[ "$worst" -lt $((base + 1000 * SLOW)) ] ||
	fail "ulpd's loop blocked for $worst ms while the revert waited ($base ms before)"
shows hold 1 && shows base 1 || fail "the revert through ulpd did not restore both functions"
victim_ok
ok "the revert through ulpd waited $ms ms; $n status answers meanwhile, the slowest $worst ms ($base ms before)"
echo "PASS"
