#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A root without CAP_DAC_OVERRIDE (as in a unit whose capability set lacks it) cannot
# open /proc/PID/mem of another uid's process: the file belongs to that uid, mode 0600.
# The refusal must name the file and that cause, not ptrace; a root without
# CAP_SYS_PTRACE and an unprivileged caller are refused by the ptrace check and told so
# (common/ptrace-denied.c). With the capabilities the same apply works.
set -eu
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (runs a victim as uid 65534 and drops capabilities)"; exit 77; }
command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) missing"; exit 77; }
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

setpriv --reuid=65534 --regid=65534 --clear-groups "$BANK" 2 >"$LOG" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_for 30 bank_shows 100.00 || fail "the victim does not report"

out=$(setpriv --bounding-set=-dac_override "$ULPCTL" --direct apply -p "$pid" "$FIX" 2>&1) && fail "applied without CAP_DAC_OVERRIDE: $out"
want="ulpctl: cannot open /proc/$pid/mem for writing: permission denied: the file belongs to uid 65534, and this process (uid 0) lacks CAP_DAC_OVERRIDE"
[ "$out" = "$want" ] || fail "without CAP_DAC_OVERRIDE: got '$out', want '$want'"
out=$(setpriv --bounding-set=-dac_override "$ULPCTL" --direct status -p "$pid" 2>&1) && fail "status without CAP_DAC_OVERRIDE: $out"
[ "$out" = "$want" ] || fail "status without CAP_DAC_OVERRIDE: got '$out', want '$want'"
echo "ok: without CAP_DAC_OVERRIDE: $out"

# Root without CAP_SYS_PTRACE (a unit's bounding set without it) is told what it lacks.
out=$(setpriv --bounding-set=-sys_ptrace "$ULPCTL" --direct apply -p "$pid" "$FIX" 2>&1) && fail "applied without CAP_SYS_PTRACE: $out"
want="ulpctl: not allowed to trace process $pid (the kernel's ptrace access check for this user: its user ids are not all yours, and this process lacks CAP_SYS_PTRACE)"
[ "$out" = "$want" ] || fail "without CAP_SYS_PTRACE: got '$out', want '$want'"
echo "ok: without CAP_SYS_PTRACE: $out"

out=$(setpriv --reuid=65533 --regid=65533 --clear-groups "$ULPCTL" --direct apply -p "$pid" "$FIX" 2>&1) && fail "another uid applied: $out"
want="ulpctl: not allowed to trace process $pid (the kernel's ptrace access check for this user: its user ids are not all yours)"
[ "$out" = "$want" ] || fail "unprivileged: got '$out', want '$want'"
echo "ok: uid 65533: $out"

tail -n 1 "$LOG" | grep "transfer: 100.00 " >/dev/null || fail "the refused applies changed the victim"
"$ULPCTL" --direct apply -p "$pid" "$FIX" || fail "root with its capabilities could not apply"
wait_for 30 bank_shows 10.00 || fail "the victim does not see the fix"
echo "ok: root with CAP_DAC_OVERRIDE applied; the victim says: $(tail -n 1 "$LOG")"
