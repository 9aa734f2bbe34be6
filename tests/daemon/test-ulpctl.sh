#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# ulpctl talks to ulpd by default ($ULP_SOCKET): apply, status, revert, the exit codes
# (0 done, 1 failed, 3 timed out and reversed), and a clear line when no daemon answers.
set -u
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
tmp=$WORK
chmod 755 "$tmp"
on_exit() { cat "$tmp/log"; }
fail_details() { :; }

export ULP_SOCKET=$tmp/ulpd.sock
out=$("$ULPCTL" status 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q -- "--direct" <<<"$out" || fail "no daemon: rc $rc, '$out'"
ok "without a daemon ulpctl says so and suggests --direct: $out"

"$ULPD" --no-recover --patch-dir "" --socket "$ULP_SOCKET" --state-dir "$tmp/state" >"$tmp/log" 2>&1 &
PIDS+=($!)
wait_for 5 test -S "$ULP_SOCKET" || fail "ulpd did not start"

"$VICTIM" "$tmp/v1" 3 200 & PIDS+=($!); v1=$!
wait_for 5 grep -q 'v1=[1-9]' "$tmp/v1" || fail "victim 1 did not start"
"$ULPCTL" apply -p "$v1" "$PATCH" || fail "apply through ulpd"
ok "apply through ulpd"
"$ULPCTL" status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
p = [x for x in s["processes"] if x["pid"] == int(sys.argv[1])][0]
assert p["patches"][0]["state"] == "patched", p
' "$v1" || fail "status --json"
ok "status --json shows it patched"
"$ULPCTL" revert -p "$v1" daemon-fix-no-such; rc=$?
[ $rc -eq 1 ] || fail "revert of an unknown patch: rc $rc"
ok "revert of an unknown patch exits 1"
"$ULPCTL" revert -p "$v1" daemon-fix || fail "revert"
ok "revert through ulpd"

# a sleeper holds outer() for longer than the timeout and the reversal after it: the
# timeout reverses the transition, exit 3
"$VICTIM" "$tmp/v2" 2 200 $((5000 * SLOW)) & PIDS+=($!); v2=$!
wait_for 5 grep -q 'sleeper=1' "$tmp/v2" || fail "victim 2's sleeper did not start"
out=$("$ULPCTL" apply -p "$v2" --timeout "$SLOW" "$PATCH" 2>&1); rc=$?
echo "$out"
[ $rc -eq 3 ] || fail "timed out apply: rc $rc"
grep -q "outer" <<<"$out" || fail "stragglers not listed"
ok "a transition that does not finish in time exits 3 and names the straggler's function"
grep -q "bad=0" "$tmp/v1" && grep -q "bad=0" "$tmp/v2" || fail "mixed-version call chain seen"
ok "victims saw no mixed-version call chain"
