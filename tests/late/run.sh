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
# Blocks signed with a key of the test's own: any other ulpd on the machine (one that
# recovers every process, an installed one) leaves these victims alone.
export ULP_CONTROL_KEY=$WORK/control.key
head -c 16 /dev/urandom >"$ULP_CONTROL_KEY" && chmod 600 "$ULP_CONTROL_KEY" || fail "cannot make a key"
export LD_LIBRARY_PATH=$VICTIMS_DIR:$LATE_DIR
# The last line the victim printed itself (callbacks print "cb: ..." lines among them).
value_in() { grep -v '^cb: ' "$2" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
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
"$ULPCTL" status -p "$v2" | grep 'late objects' >/dev/null && fail "still waiting for libplugin.so: $("$ULPCTL" status -p "$v2")"
shows base 2 "$WORK/v2.log" || fail "base_value lost its patch"
ok "a refusing pre_patch leaves the library unpatched, and says so"
"$ULPCTL" revert -p "$v2" late-cb || fail "revert (refusing victim)"
callbacks_ran "$WORK/cb2" "pre_patch " || fail "unpatch callbacks of an object never patched ran: $(cat "$WORK/cb2")"
ok "its unpatch callbacks do not run"

# pre_patch runs once per coming, even when the switch has to be tried again: a thread of
# the victim waits inside hold_wait(), which the patch replaces, until $WORK/hold goes;
# ulpd's tries meanwhile find it in the way (-EBUSY) and try again each second. The
# library's callbacks print "cb: NAME" in the victim's output.
printed() { [ "$(cbs "${2:-$WORK/v3.log}")" = "$1" ]; }
cbs() { sed -n 's/^cb: //p' "${1:-$WORK/v3.log}" | tr '\n' ' '; }
touch "$WORK/hold"
HOLD_FILE="$WORK/hold" "$LATE_VICTIM" >"$WORK/v3.log" 2>&1 &
v3=$!
PIDS+=("$v3")
wait_for 5 grep -q '^base=1 hold=-1' "$WORK/v3.log" || fail "late victim did not start"
"$ULPCTL" apply -p "$v3" "$LATE_DIR/late-patch-hold.so" || fail "apply through ulpd (late victim)"
wait_for 5 shows base 2 "$WORK/v3.log" || fail "base_value not patched (late victim)"
kill -HUP "$v3"
wait_for 5 shows loads 1 "$WORK/v3.log" || fail "the victim did not load liblatehold.so"
busy_tries() { grep -c "pid $v3: cannot patch the objects it loaded yet: threads keep running" "$WORK/log"; }
tried_twice() { [ "$(busy_tries)" -ge 2 ]; }
wait_for 30 tried_twice || fail "ulpd did not try twice while a thread held hold_wait (tried $(busy_tries))"
shows hold 1 "$WORK/v3.log" || fail "liblatehold.so patched while a thread was in hold_wait"
printed "pre_patch " || fail "callbacks while the switch waits: $(cbs)"
rm "$WORK/hold"
wait_for 15 shows hold 2 "$WORK/v3.log" || fail "liblatehold.so not patched once the thread left"
wait_for 5 printed "pre_patch post_patch " || fail "callbacks after $(busy_tries) tries: $(cbs)"
ok "a switch tried $(busy_tries) times runs pre_patch once, then post_patch"

# The library goes (dlclose) and comes again: its unpatch callbacks run once ulpd sees it
# gone, it is waited for again, and the next load gets pre_patch and the new function.
kill -USR1 "$v3"
wait_for 5 shows hold -1 "$WORK/v3.log" || fail "the victim did not unload liblatehold.so"
wait_for 15 printed "pre_patch post_patch pre_unpatch post_unpatch " ||
	fail "callbacks after the unload: $(cbs)"
msg="pid $v3 unloaded liblatehold.so: its unpatch callbacks of patch late-hold ran; it is patched again if the process loads it again"
wait_for 5 grep -qF "$msg" "$WORK/log" || fail "ulpd did not log the unload"
"$ULPCTL" status -p "$v3" | grep -x '    late objects: liblatehold.so' >/dev/null ||
	fail "liblatehold.so not waited for again: $("$ULPCTL" status -p "$v3")"
shows base 2 "$WORK/v3.log" || fail "base_value lost its patch at the unload"
ok "an unloaded library gets pre_unpatch and post_unpatch, and is waited for again"
kill -HUP "$v3"
wait_for 5 shows loads 2 "$WORK/v3.log" || fail "the victim did not load liblatehold.so again"
wait_for 15 shows hold 2 "$WORK/v3.log" || fail "liblatehold.so not patched at its second load"
wait_for 5 printed "pre_patch post_patch pre_unpatch post_unpatch pre_patch post_patch " ||
	fail "callbacks at the second load: $(cbs)"
ok "loaded again: pre_patch, its functions patched again, post_patch"
"$ULPCTL" revert -p "$v3" late-hold || fail "revert (late victim)"
wait_for 5 shows hold 1 "$WORK/v3.log" && shows base 1 "$WORK/v3.log" || fail "revert did not restore both"
printed "pre_patch post_patch pre_unpatch post_unpatch pre_patch post_patch pre_unpatch post_unpatch " ||
	fail "callbacks at the revert: $(cbs)"
ok "the revert after a second load runs the unpatch callbacks once more"

# A patch whose callbacks are those of a library loaded at the apply (libtrbase.so), and
# whose late object has none: coming and going run no callback, the revert runs them.
"$LATE_VICTIM" >"$WORK/v4.log" 2>&1 &
v4=$!
PIDS+=("$v4")
wait_for 5 grep -q '^base=1 hold=-1' "$WORK/v4.log" || fail "second late victim did not start"
"$ULPCTL" apply -p "$v4" "$LATE_DIR/late-patch-other.so" || fail "apply through ulpd (late-other)"
wait_for 5 shows base 3 "$WORK/v4.log" || fail "base_value not patched (late-other)"
printed "base pre_patch base post_patch " "$WORK/v4.log" || fail "callbacks at the apply: $(cbs "$WORK/v4.log")"
kill -HUP "$v4"
wait_for 15 shows hold 3 "$WORK/v4.log" || fail "liblatehold.so not patched (late-other)"
kill -USR1 "$v4"
wait_for 5 shows hold -1 "$WORK/v4.log" || fail "the victim did not unload liblatehold.so (late-other)"
wait_for 15 sh -c "\"$ULPCTL\" status -p $v4 | grep -x '    late objects: liblatehold.so' >/dev/null" ||
	fail "liblatehold.so not waited for again (late-other): $("$ULPCTL" status -p "$v4")"
kill -HUP "$v4"
wait_for 15 shows hold 3 "$WORK/v4.log" || fail "liblatehold.so not patched at its second load (late-other)"
printed "base pre_patch base post_patch " "$WORK/v4.log" ||
	fail "callbacks of another object ran at the load or unload: $(cbs "$WORK/v4.log")"
"$ULPCTL" revert -p "$v4" late-other || fail "revert (late-other)"
wait_for 5 shows hold 1 "$WORK/v4.log" && shows base 1 "$WORK/v4.log" || fail "revert did not restore both (late-other)"
printed "base pre_patch base post_patch base pre_unpatch base post_unpatch " "$WORK/v4.log" ||
	fail "callbacks at the revert (late-other): $(cbs "$WORK/v4.log")"
ok "a library without callbacks comes, goes and comes again; the patch's other callbacks run at the revert only"
