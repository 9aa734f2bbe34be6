#!/usr/bin/env bash
# A callback past its deadline is left to finish by itself (docs/fault-tolerance.md,
# "Callbacks past their deadline"). The victim's workers take its shared_lock; the
# patch's pre-patch callback takes that lock and holds it until the victim gets SIGUSR1,
# far past the --callback-timeout given. The apply must be refused with one line naming
# the thread; the victim must live; a second apply while the callback runs must be
# refused; once the callback is released its workers must take the lock again; and a
# later apply must work, with the code kept for the callback reclaimed.
# Usage: test-overdue.sh  (env from meson: ULPCTL, LOCK_VICTIM, LOCK_PATCH)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ulpctl() { "$ULPCTL" --direct "$@"; }
last() { grep -E '^ticks=' "$LOG" | tail -n 1; }
# field KEY: in the victim's last "ticks=" line (lib.sh's field KEY LINE, on that line).
field() { echo "$(last)" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# the workers tick: the count grows within a few seconds
ticking() {
	local a
	a=$(field ticks)
	wait_for 5 eval '[ "$(field ticks)" -gt "'"${a:-0}"'" ]'
}
alive() { kill -0 "$VPID" 2>/dev/null && ! grep -q '^TracerPid:[[:space:]]*[1-9]' "/proc/$VPID/status"; }
patch_maps() { grep -c 'ulp-patch' "/proc/$VPID/maps"; }

"$LOCK_VICTIM" >"$LOG" 2>&1 &
VPID=$!
wait_for 10 grep -qs '^ticks=' "$LOG" || fail "victim did not start"
ticking || fail "the victim's workers do not tick"

# 1. The callback takes the lock and outlives its deadline: refused, the thread runs on.
expect_refusal "overdue callback" \
	"^ulpctl: the pre-patch callback did not return within 300 ms: it runs on in thread [0-9]+ of process $VPID, and the patch's code stays loaded until it returns; nothing changed\$" \
	ulpctl apply -p "$VPID" --callback-timeout 300 "$LOCK_PATCH"
alive || fail "the victim died or stayed traced after the refusal"
[ "$(field value)" = 1 ] || fail "the victim runs value() version $(field value)"

# 2. While the callback holds the lock: the workers wait on it, another apply is refused.
expect_refusal "while it runs" \
	"^ulpctl: a callback left past its deadline still runs in thread [0-9]+ of process $VPID: no other callback runs before it returns\$" \
	ulpctl apply -p "$VPID" --callback-timeout 300 "$LOCK_PATCH"
stalled() {
	local a
	a=$(field ticks); sleep 0.3
	[ "$(field ticks)" = "$a" ]
}
wait_for 10 stalled || fail "the workers kept ticking while the callback held their lock"
alive || fail "the victim died"

# 3. Released: the callback ends by itself and unlocks; the workers take the lock again.
kill -USR1 "$VPID"
ticking || fail "the workers did not take the lock again after the callback ended"
alive || fail "the victim died after the callback ended"

# 4. A later apply works, and reclaims the code kept for the overdue callback.
[ "$(patch_maps)" -ge 1 ] || fail "the code kept for the callback is not mapped"
out=$(ulpctl apply -p "$VPID" --callback-timeout 300 "$LOCK_PATCH" 2>&1) || fail "the later apply failed: $out"
wait_for 5 eval '[ "$(field value)" = 2 ]' || fail "the victim does not run value() version 2: $(last)"
# one memfd (inode) per apply: the overdue one's is gone
maps=$(grep 'ulp-patch' "/proc/$VPID/maps" | awk '{ print $5 }' | sort -u | wc -l)
[ "$maps" -eq 1 ] || fail "$maps patch mappings, expected only the live one: $(grep ulp-patch /proc/$VPID/maps)"
out=$(ulpctl revert -p "$VPID" fault-lock 2>&1) || fail "revert failed: $out"
wait_for 5 eval '[ "$(field value)" = 1 ]' || fail "the victim does not run value() version 1 after the revert"
ticking || fail "the workers stopped"
alive || fail "the victim died"
echo "PASS: overdue callback left to finish; victim alive, its lock taken again, later apply and revert done"
