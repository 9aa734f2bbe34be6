#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A late object's post_patch that crashes runs once (docs/late-callbacks.md): the victim
# loads liblatehold.so, whose post_patch (late-patch-hold.so, $LATE_POST_CRASH) prints
# its line and then faults; ulp puts its thread back where it was, and the call counts
# as run, as an apply's post_patch does. Neither the next ulp_apply_late() (ulpd's next
# look, a second later), nor the revert, may run it again. Before, the object was left
# POSTPENDING, as for a call that never started, and every run called it again: ulpd
# did once a second, for as long as the process lived.
# Usage: test-post-crash.sh  (env from meson: ULPCTL, LATE_VICTIM, LATE_DIR, VICTIMS_DIR,
# PENDING)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/late-lib.sh"


LATE_POST_CRASH=1 "$LATE_VICTIM" >"$LOG" 2>&1 &
VPID=$!
wait_for 5 grep -q '^base=1 hold=-1' "$LOG" || fail "victim did not start"
out=$(ulpctl apply -p "$VPID" "$PATCH" 2>&1) || fail "apply failed: $out"
shows base 2 || fail "base_value not patched"
kill -HUP "$VPID"
shows loads 1 || fail "liblatehold.so not loaded"

"$PENDING" "$VPID" >"$WORK/first.out" 2>&1 || fail "the first run failed: $(cat "$WORK/first.out")"
shows hold 2 || fail "hold_value not patched"
victim_ok
[ "$(cbs)" = "pre_patch post_patch " ] || fail "callbacks after the first run: $(cbs)"
ok "the first run patched the library; post_patch crashed and its thread went on"

"$PENDING" "$VPID" >"$WORK/second.out" 2>&1
rc=$?
[ $rc = 1 ] && grep -qx 'no pending object is loaded yet' "$WORK/second.out" ||
	fail "the second run: exit $rc: $(cat "$WORK/second.out"); callbacks $(cbs)"
[ "$(count post_patch)" = 1 ] || fail "the second run ran post_patch again: $(cbs)"
victim_ok
ok "the second run found nothing to do"

out=$(ulpctl revert -p "$VPID" late-hold 2>&1) || fail "the revert failed: $out"
shows hold 1 && shows base 1 || fail "the revert did not restore both"
[ "$(cbs)" = "pre_patch post_patch pre_unpatch post_unpatch " ] || fail "callbacks after the revert: $(cbs)"
victim_ok
ok "the revert ran the unpatch callbacks and not post_patch"
echo "PASS"
