#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The unloading of an object that came late (docs/late-callbacks.md, "Objects that go";
# docs/control-block.md, "Objects loaded later"), killed after each write: the victim
# loads liblatehold.so, ulp_apply_late() (transition-pending, as ulpd runs it) patches it,
# the victim unloads it, and the ulp_apply_late() that sees it gone is killed with SIGKILL
# right after each of its writes into the victim (control-killhook.so,
# ULP_KILL_AFTER_WRITE). Each time the victim must be alive, status must read the block,
# and the block must be before or after the whole removal, never half: either the
# object's records are there and it is not waited for, or they are gone and it is waited
# for. Once the kill falls after the removal is published, every later kill does too.
# Then the next run ends the unload (pre_unpatch again, then post_unpatch) or finds
# nothing left to do; a new load is patched again, and the revert restores both
# functions.
# Usage: test-unload-kill.sh  (env from meson: ULPCTL, LATE_VICTIM, LATE_DIR, VICTIMS_DIR,
# PENDING, KILLHOOK)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/late-lib.sh"

# the block as status reads it: "waiting" (late object listed, no record of hold_value),
# "patched" (the record, not listed), anything else is a half-done removal
block_state() {
	local out late rec
	out=$(ulpctl status -p "$VPID" 2>&1) || { echo "status failed: $out"; return; }
	late=$(grep -cx '    late objects: liblatehold.so' <<<"$out")
	rec=$(grep -c 'liblatehold.so:hold_value' <<<"$out")
	case "$late$rec" in
	10) echo waiting ;;
	01) echo patched ;;
	*) echo "half: $out" ;;
	esac
}
# A victim with the patch applied, then liblatehold.so loaded (waiting for its switch).
start_loaded() {
	: >"$LOG"
	"$LATE_VICTIM" >"$LOG" 2>&1 &
	VPID=$!
	wait_for 5 grep -q '^base=1 hold=-1' "$LOG" || fail "victim did not start"
	ulpctl apply -p "$VPID" "$PATCH" >/dev/null || fail "apply failed"
	kill -HUP "$VPID"
	shows loads 1 || fail "liblatehold.so not loaded"
}
# A victim with liblatehold.so patched, then unloaded.
start_unloaded() {
	start_loaded
	shows base 2 || fail "base_value not patched"
	"$PENDING" "$VPID" >/dev/null || fail "liblatehold.so not patched"
	shows hold 2 || fail "hold_value not patched"
	kill -USR1 "$VPID"
	shows hold -1 || fail "liblatehold.so not unloaded"
}

start_unloaded
hooked ULP_WRITE_LOG="$WORK/writes" "$PENDING" "$VPID" || fail "the plain unload failed: $(cat "$WORK/hooked.out")"
[ "$(cbs)" = "pre_patch post_patch pre_unpatch post_unpatch " ] || fail "callbacks of the plain unload: $(cbs)"
[ "$(block_state)" = waiting ] || fail "the plain unload: $(block_state)"
n=$(wc -l <"$WORK/writes")
# The writes: pre_unpatch's call; the stage (the patch's one record left and its patch
# record); the header publishing it (seqlock begin, 4096, end); the copy into place;
# post_unpatch's call. The removal is in from the first header write on.
publish=$(awk '$3 == 4096 { print $1; exit }' "$WORK/writes")
[ -n "$publish" ] || fail "no header write in the plain unload: $(cat "$WORK/writes")"
stop_victim

trials=0 lost=0 half=0 published_at=
for ((k = 1; k <= n; k++)); do
	what="killed after write $k of $n"
	start_unloaded
	trials=$((trials + 1))
	kill_after_write "$k" "$what" "$PENDING" "$VPID"
	state=$(block_state)
	case "$state" in
	waiting) published_at=${published_at:-$k} ;;
	patched) [ -z "$published_at" ] ||
		fail "$what: the removal published at write $published_at, not at this kill" ;;
	*) half=$((half + 1)); fail "$what: $state" ;;
	esac
	hooked "$PENDING" "$VPID"; rc=$?
	if [ "$state" = waiting ]; then   # the removal is in: nothing left to do
		[ $rc = 1 ] && grep -qx 'no pending object is loaded yet' "$WORK/hooked.out" ||
			fail "$what: the next run: exit $rc: $(cat "$WORK/hooked.out")"
		case "$(cbs)" in
		"pre_patch post_patch pre_unpatch "|"pre_patch post_patch pre_unpatch post_unpatch ") ;;
		*) fail "$what: callbacks: $(cbs)" ;;
		esac
	else   # the next run unloads it: pre_unpatch again (it may have run), post_unpatch
		[ $rc = 0 ] || fail "$what: the next run failed: $(cat "$WORK/hooked.out")"
		case "$(cbs)" in
		"pre_patch post_patch pre_unpatch post_unpatch "|"pre_patch post_patch pre_unpatch pre_unpatch post_unpatch ") ;;
		*) fail "$what: callbacks: $(cbs)" ;;
		esac
	fi
	[ "$(block_state)" = waiting ] || fail "$what: after the next run: $(block_state)"
	shows base 2 || fail "$what: base_value lost its patch"
	kill -HUP "$VPID"
	shows loads 2 || fail "$what: liblatehold.so not loaded again"
	"$PENDING" "$VPID" >/dev/null || fail "$what: liblatehold.so not patched again: $(cat "$WORK/hooked.out")"
	shows hold 2 || fail "$what: hold_value not patched at the second load"
	out=$(ulpctl revert -p "$VPID" late-hold 2>&1) || fail "$what: the revert failed: $out"
	shows hold 1 && shows base 1 || fail "$what: the revert did not restore both"
	victim_ok
	ok "$what: the block before or after the removal ($state), patched again at the next load"
	stop_victim
done
[ "$published_at" = "$publish" ] ||
	fail "the removal read as published from write ${published_at:-none}, not from the header write $publish"
echo "unload kills: trials=$trials lost=$lost half=$half published at write $published_at of $n"

# A switch left half done (its records published, no entry written) by a driver killed at
# the load, then the library unloaded: the next run drops those records, running no
# callback (none was recorded), and a new load is patched from the start.
start_loaded
hooked ULP_WRITE_LOG="$WORK/load-writes" "$PENDING" "$VPID" || fail "the plain load failed: $(cat "$WORK/hooked.out")"
# the header write of the copy of the stage into place, before the entry jumps: the one
# inside the copy's seqlock bracket (not after a 20-byte begin; the callbacks' records
# write the header too)
copied=$(awk '$3 == 4096 && prev != 20 { k = $1 } { prev = $3 } END { print k }' "$WORK/load-writes")
stop_victim
start_loaded
hooked ULP_KILL_AFTER_WRITE="$copied" "$PENDING" "$VPID"
[ $? = 137 ] || fail "the load: not killed after write $copied: $(cat "$WORK/hooked.out")"
shows hold 1 || fail "hold_value patched before its entry was written"
out=$(ulpctl status -p "$VPID" 2>&1)
grep -q 'liblatehold.so:hold_value' <<<"$out" || fail "the records were not published: $out"
kill -USR1 "$VPID"
shows hold -1 || fail "liblatehold.so not unloaded"
hooked "$PENDING" "$VPID" || fail "the run after the unload failed: $(cat "$WORK/hooked.out")"
[ "$(block_state)" = waiting ] || fail "the half-done records after the unload: $(block_state)"
[ "$(cbs)" = "pre_patch " ] || fail "callbacks after the half-done switch's unload: $(cbs)"
kill -HUP "$VPID"
shows loads 2 || fail "liblatehold.so not loaded again"
"$PENDING" "$VPID" >/dev/null || fail "liblatehold.so not patched at its second load"
shows hold 2 || fail "hold_value not patched at the second load"
[ "$(cbs)" = "pre_patch pre_patch post_patch " ] || fail "callbacks at the second load: $(cbs)"
out=$(ulpctl revert -p "$VPID" late-hold 2>&1) || fail "the revert failed: $out"
shows hold 1 && shows base 1 || fail "the revert did not restore both"
victim_ok
ok "a half-done switch whose library went: its records dropped, the next load patched from the start"
echo "PASS"
