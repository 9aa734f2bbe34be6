#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Callbacks of an object loaded after the patch (docs/late-callbacks.md): a patch whose
# ULP_CALLBACKS name libplugin.so, applied through ulpd before the process dlopen()s it:
# nothing runs at the apply; at the load ulpd runs pre_patch, patches the library, runs
# post_patch; the revert runs the unpatch callbacks. A pre_patch that refuses leaves the
# library unpatched, with one line in ulpd's log. The consistency victim (tests/victims)
# links libtrbase.so and dlopen()s libplugin.so on SIGHUP.
set -u
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (ulpd)"; exit 77; }
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
chmod 755 "$WORK"
fail_details() { echo "--- ulpd log"; cat "$WORK/log"; for f in "$WORK"/v*.log; do echo "--- $f"; tail -n 2 "$f"; done; }

export ULP_SOCKET=$WORK/ulpd.sock
export LD_LIBRARY_PATH=$VICTIMS_DIR
value_in() { tail -n 1 "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
shows() { [ "$(value_in "$1" "$3")" = "$2" ]; }
start_victim() {   # start_victim LOG [VAR=VALUE...]: the pid in VPID
	local log=$1; shift
	env "$@" "$TR_VICTIM" -n 2 >"$log" 2>&1 &
	VPID=$!
	PIDS+=("$VPID")
	wait_for 5 grep -q '^v1=' "$log" || fail "victim did not start"
}
callbacks_ran() { [ "$(tr '\n' ' ' <"$1" 2>/dev/null)" = "$2" ]; }

# Refused with --direct before anything is written: nothing would run these callbacks.
start_victim "$WORK/v0.log"
out=$("$ULPCTL" --direct apply -p "$VPID" "$LATE_DIR/late-patch-nofunc.so" 2>&1) && fail "applied: $out"
[ "$out" = "ulpctl: object libplugin.so of the callbacks is not loaded, and the patch replaces none of its functions" ] ||
	fail "refusal: $out"
ok "callbacks of an object not loaded, without functions there: refused"
kill -9 "$VPID"

"$ULPD" --no-recover --patch-dir "" --debug --socket "$ULP_SOCKET" --state-dir "$WORK/state" >"$WORK/log" 2>&1 &
PIDS+=($!)
wait_for 5 test -S "$ULP_SOCKET" || fail "ulpd did not start"

start_victim "$WORK/v1.log" LATE_CB_FILE="$WORK/cb1"
v1=$VPID
"$ULPCTL" apply -p "$v1" "$LATE_DIR/late-patch-cb.so" || fail "apply through ulpd"
wait_for 5 shows base 2 "$WORK/v1.log" || fail "base_value not patched"
sleep 0.5
[ ! -e "$WORK/cb1" ] || fail "callbacks ran before the library was loaded: $(cat "$WORK/cb1")"
ok "applied: no callback of libplugin.so runs while it is not loaded"
kill -HUP "$v1"
wait_for 10 shows plugin 200 "$WORK/v1.log" || fail "plugin_value not patched after the load"
wait_for 5 callbacks_ran "$WORK/cb1" "pre_patch post_patch " || fail "callbacks at the load: $(cat "$WORK/cb1" 2>&1)"
ok "at the load: pre_patch, the functions, post_patch"
"$ULPCTL" revert -p "$v1" late-cb || fail "revert"
wait_for 5 shows plugin 100 "$WORK/v1.log" && shows base 1 "$WORK/v1.log" || fail "revert did not restore both"
callbacks_ran "$WORK/cb1" "pre_patch post_patch pre_unpatch post_unpatch " ||
	fail "callbacks at the revert: $(cat "$WORK/cb1")"
grep -q 'mixed=0 ' "$WORK/v1.log" && ! grep -q 'mixed=[1-9]' "$WORK/v1.log" || fail "mixed calls"
ok "the revert runs libplugin.so's unpatch callbacks"

start_victim "$WORK/v2.log" LATE_CB_FILE="$WORK/cb2" LATE_CB_REFUSE=1
v2=$VPID
"$ULPCTL" apply -p "$v2" "$LATE_DIR/late-patch-cb.so" || fail "apply through ulpd (refusing victim)"
wait_for 5 shows base 2 "$WORK/v2.log" || fail "base_value not patched (refusing victim)"
kill -HUP "$v2"
msg="the pre-patch callback of libplugin.so (patch late-cb) refused (returned 7): its functions stay unpatched in process $v2"
wait_for 10 grep -qF "$msg" "$WORK/log" || fail "ulpd did not log the refusal"
shows plugin 100 "$WORK/v2.log" || wait_for 5 shows plugin 100 "$WORK/v2.log" || fail "the library was patched anyway"
callbacks_ran "$WORK/cb2" "pre_patch " || fail "callbacks after a refusal: $(cat "$WORK/cb2")"
"$ULPCTL" status -p "$v2" | grep -q 'late objects' && fail "still waiting for libplugin.so: $("$ULPCTL" status -p "$v2")"
shows base 2 "$WORK/v2.log" || fail "base_value lost its patch"
ok "a refusing pre_patch leaves the library unpatched, and says so"
"$ULPCTL" revert -p "$v2" late-cb || fail "revert (refusing victim)"
callbacks_ran "$WORK/cb2" "pre_patch " || fail "unpatch callbacks of an object never patched ran: $(cat "$WORK/cb2")"
ok "its unpatch callbacks do not run"
