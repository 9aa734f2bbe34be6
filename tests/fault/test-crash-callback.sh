#!/usr/bin/env bash
# A pre-patch callback that could not run (it crashes: patch-crash.c) fails the apply,
# and that apply itself takes the patch back out: right after it, status shows no
# patch, the patch's code is no longer mapped, the victim lives on running version 1
# and never ran version 2; the apply of a working patch and its revert follow as usual
# (docs/fault-tolerance.md, "A callback that could not run").
# Usage: test-crash-callback.sh  (env from meson: ULPCTL, VICTIM, PATCH_CRASH, PATCH)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=

ulpctl() { "$ULPCTL" --direct "$@"; }
mapped() { grep -c "memfd:ulp-patch:$1 " "/proc/$VPID/maps"; }
# grows KEY: the victim's KEY= grows within 5 s (times SLOW)
grows() { rises "$1" 5; }

"$VICTIM" -n 4 >"$LOG" 2>&1 &
VPID=$!
wait_for 10 grep -qs '^v1=' "$LOG" || fail "victim did not start"

for round in 1 2; do
	err=$(ulpctl apply -p "$VPID" "$PATCH_CRASH" 2>&1 >/dev/null); rc=$?
	[ "$rc" = 1 ] || fail "round $round: the apply exited $rc, expected 1: $err"
	re="^ulpctl: the pre-patch callback did not run: the callback could not run in thread [0-9]+ of process $VPID: a bad address in the process \(unmapped memory or a fault\); nothing changed\$"
	grep -qE "$re" <<<"$err" || fail "round $round: message: $err"
	victim_ok
	[ "$(mapped crash)" = 0 ] || fail "round $round: the patch's code is still mapped after the failed apply"
	out=$(ulpctl status -p "$VPID" 2>&1) || fail "round $round: status failed: $out"
	! grep -q 'crash' <<<"$out" || fail "round $round: status still shows the patch: $out"
	json=$(ulpctl status --json -p "$VPID" 2>&1) || fail "round $round: status --json failed: $json"
	[ "$(echo "$json" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["processes"][0]["patches"]))')" = 0 ] ||
		fail "round $round: status --json still lists a patch: $json"
	grows v1 || fail "round $round: the victim's workers stopped"
	[ "$(now v2)" = 0 ] || fail "round $round: version 2 ran: $(last_tick)"
	ok "round $round: the failed apply left no code, no record; the victim runs version 1"
done

ulpctl apply -p "$VPID" "$PATCH" >/dev/null || fail "the apply of a working patch failed"
grows v2 || fail "version 2 does not run"
ulpctl revert -p "$VPID" fault >/dev/null || fail "the revert failed"
[ "$(mapped fault)" = 0 ] || fail "the working patch's code is still mapped after its revert"
[ "$(now mixed)" = 0 ] || fail "mixed calls: $(last_tick)"
victim_ok
ok "a working patch applies and reverts after them"
echo "PASS"
