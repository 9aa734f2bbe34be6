#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Libraries loaded after the patch: ulpd patches a library a process dlopen()s after a
# patch naming it was applied (status lists it as a late object until then), without being
# asked again. Then the sticky form: a wish recorded with --all --persist reaches a
# process started later, and the library that process loads later.
# The consistency victim (tests/victims) links libtrbase.so (base_value) and
# dlopen()s libplugin.so (plugin_value) on SIGHUP; patch-pending.so patches both.
# Usage: test-pending.sh late-load|sticky   (two meson tests: one may skip, not both)
set -u
CASE=${1:?usage: test-pending.sh late-load|sticky}
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
tmp=$WORK
chmod 755 "$tmp"
on_exit() { echo "--- ulpd log"; cat "$tmp/log"; }
fail_details() { for f in "$tmp"/v*.log; do echo "--- $f"; tail -n 2 "$f"; done; }

export ULP_SOCKET=$tmp/ulpd.sock
export LD_LIBRARY_PATH=$VICTIMS_DIR
PATCH_P=$TR_DIR/patch-pending.so

# the value of KEY in the victim's last line (log file LOG)
value_in() { tail -n 1 "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
shows() { [ "$(value_in "$1" "$3")" = "$2" ]; }
PNAME=pending   # the sticky case's patch has a name of its own
# the pending objects of patch $PNAME in PID, as a Python list
pending_of() {
	"$ULPCTL" status --json -p "$1" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print([o for p in s["processes"] if p["pid"] == int(sys.argv[1])
         for x in p["patches"] if x["name"] == sys.argv[2] for o in x["pending_objects"]])
' "$1" "$PNAME"
}
plugin_pending() { [ "$(pending_of "$1")" = "['libplugin.so']" ]; }
start_victim() {   # start_victim LOG: the pid in VPID
	"$TR_VICTIM" -n 2 >"$1" 2>&1 &
	VPID=$!
	PIDS+=("$VPID")
	wait_for 5 grep -q '^v1=' "$1" || fail "victim did not start"
}

"$ULPD" --no-recover --patch-dir "" --debug --socket "$ULP_SOCKET" --state-dir "$tmp/state" >"$tmp/log" 2>&1 &
PIDS+=($!)
wait_for 5 test -S "$ULP_SOCKET" || fail "ulpd did not start"

# ---- a library loaded after the apply
case_late_load() {
start_victim "$tmp/v1.log"; v1=$VPID
wait_for 5 shows base 1 "$tmp/v1.log" || fail "victim base is not 1"
"$ULPCTL" apply -p "$v1" "$PATCH_P" || fail "apply through ulpd"
wait_for 5 shows base 2 "$tmp/v1.log" || fail "base_value not patched"
ok "applied: base_value patched at once"
plugin_pending "$v1" ||
	fail "status does not list libplugin.so as pending: $("$ULPCTL" status -p "$v1")"
"$ULPCTL" status -p "$v1" | grep 'late objects: libplugin.so' >/dev/null || fail "status text: $("$ULPCTL" status -p "$v1")"
ok "status lists libplugin.so as pending"
sleep 1.5
plugin_pending "$v1" && shows plugin -1 "$tmp/v1.log" ||
	fail "something happened before the library was loaded"
ok "nothing happens while the library is not loaded"
kill -HUP "$v1"
t0=$(date +%s%N)
wait_for 5 shows plugin 200 "$tmp/v1.log" || fail "plugin_value not patched within 5 s of the dlopen: plugin=$(value_in plugin "$tmp/v1.log")"
t1=$(date +%s%N)
ok "the victim sees plugin_value's new version $(( (t1 - t0) / 1000000 )) ms after it loaded the library"
shows base 2 "$tmp/v1.log" || fail "base_value lost its patch"
[ "$(pending_of "$v1")" = "[]" ] || fail "still pending: $(pending_of "$v1")"
ok "status no longer lists it pending"
grep -q "pid $v1 loaded libplugin.so: patch pending now covers it too" "$tmp/log" || fail "ulpd did not log it"
ok "ulpd logged it"
"$ULPCTL" revert -p "$v1" pending || fail "revert"
wait_for 5 shows plugin 100 "$tmp/v1.log" && shows base 1 "$tmp/v1.log" || fail "revert did not restore both"
grep -q 'mixed=0 ' "$tmp/v1.log" && ! grep -q 'mixed=[1-9]' "$tmp/v1.log" || fail "mixed calls"
ok "revert restores both functions; no mixed calls"
kill "$v1"
}

# ---- the sticky form: a process started later, which loads the library later still
case_sticky() {
# cc and readelf are build dependencies (scripts/setup-deps.sh): missing is a failure
command -v cc >/dev/null && command -v readelf >/dev/null || fail "sticky case needs cc and readelf"
bid=$(readelf -n "$VICTIMS_DIR/libtrbase.so" | sed -n 's/.*Build ID: *//p')
[ -n "$bid" ] || fail "libtrbase.so has no build-id (it is linked with one)"
# A copy of libtrbase with a build-id of its own, first in the victims' library path:
# --all then reaches this test's processes only, never another run's.
mkdir "$tmp/lib"
python3 - "$VICTIMS_DIR/libtrbase.so" "$tmp/lib/libtrbase.so" "$bid" <<'PY' || fail "cannot give libtrbase.so a build-id of its own"
import os, sys
data, old = open(sys.argv[1], "rb").read(), bytes.fromhex(sys.argv[3])
assert data.count(old) == 1
open(sys.argv[2], "wb").write(data.replace(old, os.urandom(len(old))))
PY
export LD_LIBRARY_PATH=$tmp/lib:$VICTIMS_DIR
bid=$(readelf -n "$tmp/lib/libtrbase.so" | sed -n 's/.*Build ID: *//p')
# pinned to this build's libtrbase, so that --all touches only this test's processes
# a name of its own too: revert --all by name must not reach another run's processes
PNAME=pending-${tmp##*.}
{ sed "s/ULP_PATCH_INFO(\"pending\"/ULP_PATCH_INFO(\"$PNAME\"/" "$TR_SRC/patch-pending.c"; echo "ULP_BUILD_ID(\"libtrbase.so\", \"$bid\");"; } >"$tmp/pending.c"
cc -shared -fPIC -O2 -I "$ULP_SOURCE_ROOT/include" "$tmp/pending.c" -o "$tmp/pending.so" || fail "cannot build the pinned patch"
"$ULPCTL" apply --all --persist "$tmp/pending.so" || fail "apply --all --persist"
ok "sticky patch recorded"
grep -q "no exec events" "$tmp/log" && { echo "SKIP: no exec events from the process connector here (ulpd: $(grep -m1 'no exec events' "$tmp/log"))"; exit 77; }
start_victim "$tmp/v2.log"; v2=$VPID
wait_for 10 shows base 2 "$tmp/v2.log" || fail "the sticky patch did not reach a process started later"
ok "a process started later got the sticky patch"
wait_for 5 plugin_pending "$v2" || fail "late process: pending $(pending_of "$v2")"
kill -HUP "$v2"
wait_for 5 shows plugin 200 "$tmp/v2.log" || fail "the library the late process loaded was not patched: plugin=$(value_in plugin "$tmp/v2.log")"
[ "$(pending_of "$v2")" = "[]" ] || fail "late process: still pending: $(pending_of "$v2")"
ok "the library the late process loaded later is patched too"
"$ULPCTL" revert --all --persist "$PNAME" || fail "revert --all --persist"
wait_for 5 shows plugin 100 "$tmp/v2.log" && shows base 1 "$tmp/v2.log" || fail "sticky revert"
ok "revert --all --persist"
}

"case_${CASE//-/_}"
exit 0
