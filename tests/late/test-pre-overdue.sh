#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A late object's pre_patch past its deadline, through ulpd (docs/late-callbacks.md): the
# victim loads liblatehold.so, whose pre_patch (late-patch-hold.so, $LATE_PRE_SLOW)
# sleeps 13 s, past the 10 s a callback has. ulpd's look at loaded libraries leaves it
# to run on (it counts as run) and must try the switch again at its next looks, until
# the callback has returned: then the library is patched, pre_patch and post_patch
# having run once each. Before, ulp_apply_late() failed with -ETIME there, and ulpd
# forgot the process: the library stayed unpatched until some other operation.
# Usage: test-pre-overdue.sh  (env from meson: ULPD, ULPCTL, LATE_VICTIM, LATE_DIR,
# VICTIMS_DIR)
set -uo pipefail
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (ulpd)"; exit 77; }
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
chmod 755 "$WORK"
VPID=
export LD_LIBRARY_PATH=$VICTIMS_DIR:$LATE_DIR
export ULP_SOCKET=$WORK/ulpd.sock
# Blocks signed with a key of the test's own: any other ulpd leaves this victim alone.
export ULP_CONTROL_KEY=$WORK/control.key
head -c 16 /dev/urandom >"$ULP_CONTROL_KEY" && chmod 600 "$ULP_CONTROL_KEY" || fail "cannot make a key"
PATCH=$LATE_DIR/late-patch-hold.so
fail_details() { echo "--- ulpd log"; tail -n 20 "$WORK/ulpd.log"; echo "--- victim"; tail -n 3 "$LOG"; }

value_in() { grep -v '^cb: ' "$LOG" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
shows() { wait_for "$3" eval "[ \"\$(value_in $1)\" = $2 ]"; }
cbs() { grep '^cb: ' "$LOG" | sed 's/^cb: //' | tr '\n' ' '; }

"$ULPD" --no-recover --patch-dir "" --debug --socket "$ULP_SOCKET" --state-dir "$WORK/state" \
	>"$WORK/ulpd.log" 2>&1 &
PIDS+=($!)
wait_for 10 test -S "$ULP_SOCKET" || fail "ulpd did not start"

LATE_PRE_SLOW=13 "$LATE_VICTIM" >"$LOG" 2>&1 &
VPID=$!
wait_for 5 grep -q '^base=1 hold=-1' "$LOG" || fail "victim did not start"
out=$("$ULPCTL" apply -p "$VPID" "$PATCH" 2>&1) || fail "apply through ulpd: $out"
shows base 2 5 || fail "base_value not patched"
kill -HUP "$VPID"
shows loads 1 5 || fail "liblatehold.so not loaded"
wait_for 20 grep -q 'callback did not return within 10000 ms' "$WORK/ulpd.log" ||
	fail "ulpd did not report the pre_patch past its deadline"
ok "ulpd left pre_patch running past its deadline"
shows hold 2 10 || fail "liblatehold.so not patched once pre_patch returned: callbacks $(cbs)"
wait_for 5 eval '[ "$(cbs)" = "pre_patch post_patch " ]' || fail "callbacks: $(cbs)"
victim_ok
ok "once pre_patch returned, ulpd's next look patched the library: callbacks $(cbs)"

out=$("$ULPCTL" revert -p "$VPID" late-hold 2>&1) || fail "revert: $out"
shows hold 1 5 && shows base 1 5 || fail "the revert did not restore both"
[ "$(cbs)" = "pre_patch post_patch pre_unpatch post_unpatch " ] || fail "callbacks after the revert: $(cbs)"
victim_ok
echo "PASS"
