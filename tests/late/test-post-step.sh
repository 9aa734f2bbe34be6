#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A post_patch left to run (POSTPENDING, docs/late-callbacks.md) met by a revert whose step
# finds no thread to run it on: the step is tried again, and post_patch runs before the
# revert's pre_unpatch. The victim's library is patched (pre_patch, post_patch), then its
# object marked POSTPENDING in the block, as a driver killed between the switch and
# post_patch's call leaves it; the victim's one thread then waits in vfork() (SIGUSR2)
# while the revert starts. Before, the settle warned that post_patch "failed to run",
# went on without it, and the revert ran the unpatch callbacks only.
# Usage: test-post-step.sh  (env from meson: ULPCTL, LATE_VICTIM, LATE_DIR, VICTIMS_DIR)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/late-lib.sh"

# postpending: the state byte of the late object liblatehold.so (after its name, at 63
# in its 64-byte entry) set to CONTROL_LATE_POSTPENDING (3) from LOADED (2).
postpending() {
	python3 - "$VPID" <<'PY'
import sys
pid = int(sys.argv[1])
with open(f"/proc/{pid}/maps") as f:
    start = next(int(v[0].split("-")[0], 16) for v in map(str.split, f)
                 if len(v) >= 6 and v[5] == "/memfd:ulp-control" and int(v[2], 16) == 0)
PATCHES_OFF, SIZE = 79872, 119296 - 79872
with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
    mem.seek(start + PATCHES_OFF)
    b = mem.read(SIZE)
    at = b.find(b"liblatehold.so\0")
    if at < 0 or b[at + 63] != 2:
        sys.exit(f"no LOADED entry of liblatehold.so (at {at})")
    mem.seek(start + PATCHES_OFF + at + 63)
    mem.write(b"\x03")
PY
}

LATE_VFORK_MS=$((4000 * SLOW)) "$LATE_VICTIM" >"$LOG" 2>&1 &
VPID=$!
wait_for 5 grep -q '^base=1 hold=-1' "$LOG" || fail "victim did not start"
out=$(ulpctl apply -p "$VPID" "$PATCH" 2>&1) || fail "apply: $out"
shows base 2 || fail "base_value not patched"
kill -HUP "$VPID"
shows loads 1 || fail "liblatehold.so not loaded"
"$PENDING" "$VPID" >"$WORK/pending.out" 2>&1 || fail "the late run failed: $(cat "$WORK/pending.out")"
shows hold 2 || fail "hold_value not patched"
[ "$(cbs)" = "pre_patch post_patch " ] || fail "callbacks after the late run: $(cbs)"
postpending || fail "cannot mark the object POSTPENDING"
ok "liblatehold.so patched, its object marked POSTPENDING"

kill -USR2 "$VPID"
wait_for 5 grep -qx vfork "$LOG" || fail "the victim did not vfork"
out=$(ulpctl revert --timeout $((60 * SLOW)) -p "$VPID" late-hold 2>&1) || fail "the revert failed: $out"
shows hold 1 && shows base 1 || fail "the revert did not restore both"
[ "$(cbs)" = "pre_patch post_patch post_patch pre_unpatch post_unpatch " ] ||
	fail "callbacks after the revert: $(cbs) (revert: $out)"
victim_ok
ok "the revert waited for a thread, ran the post_patch left to run, then the unpatch callbacks"
echo "PASS"
