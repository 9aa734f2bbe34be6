#!/usr/bin/env bash
# A patch load cut short (docs/fault-tolerance.md, "A patch load cut short"): ulpctl
# --direct apply is killed right after each ptrace call of the load, from the SETREGS
# that starts the memfd_create of the patch's memfd to the DETACH that ends the load
# (ptrace-kill.so, ULP_FAULT_AFTER_SYSCALL=319). Such a kill used to leave the memfd open
# in the victim for good, and its code mapped with no record naming it. After each kill
# the victim must be alive, untraced and on the original version; status must read it;
# then the next operation (an apply in odd trials, a revert of another patch in even
# ones) must leave no ulp memfd among the victim's fds, and once everything is reverted
# no patch code mapped, the victim on the original and never mixed.
#
# Then, as root, the same kill followed by ulpd's start: its recovery takes the load back.
# Usage: test-memfd.sh  (env from meson: ULPCTL, ULPD, VICTIM, PATCH, PATCH_CONS, FAULTLIB)
# Knob: MEMFD_STRIDE (default 1: every call).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=
STRIDE=${MEMFD_STRIDE:-1}
T=$((30 * SLOW))

ulpctl() { "$ULPCTL" --direct "$@"; }
# The victim's fds that are ulp's patch memfds.
ulp_fds() {
	local f n=0
	for f in /proc/"$VPID"/fd/*; do
		case "$(readlink "$f" 2>/dev/null)" in /memfd:ulp-patch:*) n=$((n + 1)) ;; esac
	done
	echo $n
}
ulp_maps() { grep -c 'memfd:ulp-patch' "/proc/$VPID/maps"; }
# The block's load_state (ControlHeader, offset 248: test-control.c checks it).
load_state() {
	python3 - "$VPID" <<'PY'
import struct, sys
pid = int(sys.argv[1])
with open(f"/proc/{pid}/maps") as f:
    start = next(int(v[0].split("-")[0], 16) for v in map(str.split, f)
                 if len(v) >= 6 and v[5] == "/memfd:ulp-control" and int(v[2], 16) == 0)
with open(f"/proc/{pid}/mem", "rb") as mem:
    mem.seek(start + 248)
    print(struct.unpack("<I", mem.read(4))[0])
PY
}
runs() { { fresh && rises "$1" 5; } && steady "$2" && [ "$(now mixed)" = 0 ]; }
fail_details() {
	echo "--- last victim lines:"; tail -n 3 "$LOG"
	echo "--- fds:"; ls -l "/proc/$VPID/fd" 2>/dev/null
	echo "--- maps:"; grep ulp "/proc/$VPID/maps" 2>/dev/null
}

"$VICTIM" -n 4 >"$LOG" 2>&1 &
VPID=$!
wait_for 10 grep -qs '^v1=' "$LOG" || fail "victim did not start"
# The control block first, so that the first memfd_create of each apply is the loader's;
# and a logged apply: the number of calls from memfd_create to the end of the load.
out=$(ulpctl apply --timeout $T -p "$VPID" "$PATCH" 2>&1) || fail "first apply: $out"
out=$(ulpctl revert --timeout $T -p "$VPID" fault 2>&1) || fail "first revert: $out"
out=$(env LD_PRELOAD="$FAULTLIB" ULP_FAULT_LOG="$WORK/calls" "$ULPCTL" --direct apply --timeout $T \
	-p "$VPID" "$PATCH" 2>&1) || fail "logged apply: $out"
out=$(ulpctl revert --timeout $T -p "$VPID" fault 2>&1) || fail "logged revert: $out"
CALLS=$(awk '/^MEMWRITE/ { next } { n++ } /^SETREGS .*rax=319$/ && !s { s = n } s && /^DETACH/ { print n - s + 1; exit }' "$WORK/calls")
[ -n "$CALLS" ] && [ "$CALLS" -gt 8 ] || fail "no load found in the logged apply's calls: $(head -c 600 "$WORK/calls")"

trials=0 killed=0 left=0 lost=0 wrong=0 past=0
for ((n = 1; n <= CALLS; n += STRIDE)); do
	trials=$((trials + 1))
	if [ $((trials % 2)) = 0 ]; then
		out=$(ulpctl apply --timeout $T -p "$VPID" "$PATCH_CONS" 2>&1) || fail "trial $trials: apply of consistency: $out"
	fi
	env LD_PRELOAD="$FAULTLIB" ULP_FAULT_AFTER_SYSCALL=319 ULP_FAULT_REQUEST=ANY ULP_FAULT_N=$n \
		"$ULPCTL" --direct apply --timeout $T -p "$VPID" "$PATCH" >"$WORK/inj.out" 2>&1
	rc=$?
	[ $rc = 137 ] || fail "trial $trials (call $n of $CALLS): the apply was not killed (exit $rc): $(cat "$WORK/inj.out")"
	killed=$((killed + 1))
	kill -0 "$VPID" 2>/dev/null || { lost=$((lost + 1)); fail "trial $trials (call $n): the victim died"; }
	victim_ok
	[ "$(ulp_fds)" = 0 ] || left=$((left + 1))
	# This load made fewer calls than the logged one (a stop needed no retry), so the kill
	# came after it, once the transition had started: not this test's window, but a kill
	# all the same, whose transition the revert takes over.
	if ulpctl status --json -p "$VPID" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(p["name"] == "fault" and p["state"] != "unpatched" for q in d["processes"] for p in q["patches"]) else 1)'; then
		past=$((past + 1))
		out=$(ulpctl revert --timeout $T -p "$VPID" fault 2>&1) ||
			fail "trial $trials (call $n): the revert of the transition left by a kill after the load failed: $out"
	fi
	if [ $((trials % 2)) = 0 ]; then
		runs v2 v1 || { wrong=$((wrong + 1)); fail "trial $trials (call $n): not on the consistency patch after the kill"; }
	else
		runs v1 v2 || { wrong=$((wrong + 1)); fail "trial $trials (call $n): not on the original after the kill"; }
	fi
	out=$(ulpctl status -p "$VPID" 2>&1) || fail "trial $trials (call $n): status failed: $out"
	if [ $((trials % 2)) = 0 ]; then
		out=$(ulpctl revert --timeout $T -p "$VPID" consistency 2>&1) ||
			fail "trial $trials (call $n): the revert after the kill failed: $out"
		[ "$(ulp_fds)" = 0 ] || fail "trial $trials (call $n): an ulp memfd is still open after the revert"
	else
		out=$(ulpctl apply --timeout $T -p "$VPID" "$PATCH" 2>&1) ||
			fail "trial $trials (call $n): the apply after the kill failed: $out"
		[ "$(ulp_fds)" = 0 ] || fail "trial $trials (call $n): an ulp memfd is still open after the apply"
		runs v2 v1 || { wrong=$((wrong + 1)); fail "trial $trials (call $n): the patch does not run after the apply"; }
		out=$(ulpctl revert --timeout $T -p "$VPID" fault 2>&1) || fail "trial $trials (call $n): revert: $out"
	fi
	runs v1 v2 || { wrong=$((wrong + 1)); fail "trial $trials (call $n): not on the original after the revert"; }
	[ "$(ulp_maps)" = 0 ] || fail "trial $trials (call $n): patch code left mapped after the revert"
	victim_ok
done
echo "load kills: trials=$trials killed=$killed memfd_left_by_kill=$left lost=$lost wrong=$wrong after_the_load=$past"
[ "$left" -gt 0 ] || fail "no kill left a memfd open: the sweep missed the window"

# The reservation refused with EEXIST (ptrace-kill.so, ULP_FAULT_EEXIST: the first one is
# made at a page the program has mapped, as if it had mapped the range since the maps
# were read, and the kernel refuses it): the loader
# reserves another range, which the record must name. Killed right after the SETREGS of
# the memfd's close (a logged apply counts the calls up to it), the load leaves its code
# at that second range; the next apply must unmap it. Before, the record kept the first
# range, which holds no mapping of the load: the code stayed mapped for good.
out=$(env LD_PRELOAD="$FAULTLIB" ULP_FAULT_EEXIST=1 ULP_FAULT_LOG="$WORK/calls-eexist" "$ULPCTL" --direct apply \
	--timeout $T -p "$VPID" "$PATCH" 2>&1) || fail "eexist: the logged apply: $out"
runs v2 v1 || fail "eexist: the patch does not run after the logged apply"
out=$(ulpctl revert --timeout $T -p "$VPID" fault 2>&1) || fail "eexist: revert: $out"
at=$(awk '/^MEMWRITE/ { next } { n++ } /^SETREGS .*rax=319$/ && !s { s = n } s && /rax=9$/ { m++ } s && /^SETREGS .*rax=3$/ { print (m >= 3 ? n - s + 1 : ""); exit }' \
	"$WORK/calls-eexist")
[ -n "$at" ] || fail "eexist: no second reservation and close in the logged load"
env LD_PRELOAD="$FAULTLIB" ULP_FAULT_EEXIST=1 ULP_FAULT_AFTER_SYSCALL=319 ULP_FAULT_REQUEST=ANY ULP_FAULT_N="$at" \
	"$ULPCTL" --direct apply --timeout $T -p "$VPID" "$PATCH" >"$WORK/inj.out" 2>&1
[ $? = 137 ] || fail "eexist: the apply was not killed: $(cat "$WORK/inj.out")"
victim_ok
[ "$(ulp_maps)" -ge 1 ] || fail "eexist: the kill left no code mapped"
runs v1 v2 || fail "eexist: not on the original after the kill"
out=$(ulpctl apply --timeout $T -p "$VPID" "$PATCH" 2>&1) || fail "eexist: the apply after the kill: $out"
out=$(ulpctl revert --timeout $T -p "$VPID" fault 2>&1) || fail "eexist: the revert after the kill: $out"
[ "$(ulp_maps)" = 0 ] || fail "eexist: the code the killed load mapped at its second range is still mapped"
[ "$(ulp_fds)" = 0 ] || fail "eexist: an ulp memfd is still open"
runs v1 v2 || fail "eexist: not on the original after the revert"
victim_ok
ok "a load that reserved a second range after EEXIST, killed, is taken back from that range"

# The taking back killed too: a load killed before its close (the fd open, the code
# mapped), then the next apply killed right after the SETREGS of the reclaim's close, then
# the next one right after that of its munmap (each finished by the thread on its own):
# the apply after them finds nothing left to close or unmap, clears the record and loads.
at=$(awk '/^MEMWRITE/ { next } { n++ } /^SETREGS .*rax=319$/ && !s { s = n } s && /^SETREGS .*rax=3$/ { print n - s; exit }' "$WORK/calls")
[ -n "$at" ] || fail "reclaim: no close in the logged load"
env LD_PRELOAD="$FAULTLIB" ULP_FAULT_AFTER_SYSCALL=319 ULP_FAULT_REQUEST=ANY ULP_FAULT_N="$at" \
	"$ULPCTL" --direct apply --timeout $T -p "$VPID" "$PATCH" >"$WORK/inj.out" 2>&1
[ $? = 137 ] || fail "reclaim: the load was not killed: $(cat "$WORK/inj.out")"
[ "$(ulp_fds)" = 1 ] && [ "$(ulp_maps)" -ge 1 ] || fail "reclaim: the kill left no memfd or no mapping"
for nr in 3 11; do
	env LD_PRELOAD="$FAULTLIB" ULP_FAULT_AFTER_SYSCALL=$nr ULP_FAULT_REQUEST=ANY ULP_FAULT_N=1 \
		"$ULPCTL" --direct apply --timeout $T -p "$VPID" "$PATCH" >"$WORK/inj.out" 2>&1
	[ $? = 137 ] || fail "reclaim: the apply was not killed at system call $nr: $(cat "$WORK/inj.out")"
	victim_ok
	[ "$(ulp_fds)" = 0 ] || fail "reclaim: the memfd is open after the kill at system call $nr"
	[ "$(load_state)" = 2 ] || fail "reclaim: the record is gone after the kill at system call $nr"
	runs v1 v2 || fail "reclaim: not on the original after the kill at system call $nr"
	[ $nr = 11 ] || [ "$(ulp_maps)" -ge 1 ] || fail "reclaim: the code was unmapped before the reclaim's munmap"
done
[ "$(ulp_maps)" = 0 ] || fail "reclaim: the code is still mapped after the reclaim's munmap"
out=$(ulpctl apply --timeout $T -p "$VPID" "$PATCH" 2>&1) || fail "reclaim: the apply after the kills: $out"
runs v2 v1 || fail "reclaim: the patch does not run"
out=$(ulpctl revert --timeout $T -p "$VPID" fault 2>&1) || fail "reclaim: revert: $out"
[ "$(ulp_maps)" = 0 ] && [ "$(ulp_fds)" = 0 ] || fail "reclaim: ulp memfd or code left after the revert"
runs v1 v2 || fail "reclaim: not on the original after the revert"
victim_ok
ok "a reclaim killed after its close, then after its munmap, is ended by the next apply"

# ulpd's recovery at its start (ulp_op_resume, no transition to take over): killed right
# after the SETREGS of the second mmap (the reservation made, the fd open), the load is
# taken back before ulpd says it is ready. The block is signed with the test's own key
# (tests/lib.sh), which recovery requires.
if [ "$EUID" = 0 ] && [ -n "${ULPD:-}" ]; then
	at=$(awk '/^MEMWRITE/ { next } { n++ } /^SETREGS .*rax=319$/ && !s { s = n } s && /rax=9$/ && ++m == 2 { print n - s + 1; exit }' "$WORK/calls")
	[ -n "$at" ] || fail "no second mmap in the logged load"
	env LD_PRELOAD="$FAULTLIB" ULP_FAULT_AFTER_SYSCALL=319 ULP_FAULT_REQUEST=ANY ULP_FAULT_N="$at" \
		"$ULPCTL" --direct apply --timeout $T -p "$VPID" "$PATCH" >"$WORK/inj.out" 2>&1
	[ $? = 137 ] || fail "recovery: the apply was not killed: $(cat "$WORK/inj.out")"
	[ "$(ulp_fds)" = 1 ] && [ "$(ulp_maps)" -ge 1 ] || fail "recovery: the kill left no memfd or no mapping"
	"$ULPD" --socket "$WORK/ulpd.sock" --state-dir "$WORK/state" --patch-dir "" --recover-only "$VPID" \
		>"$WORK/ulpd.log" 2>&1 &
	PIDS+=($!)
	wait_for 10 grep -q 'ready' "$WORK/ulpd.log" || fail "recovery: ulpd did not start: $(cat "$WORK/ulpd.log")"
	[ "$(ulp_fds)" = 0 ] || fail "recovery: an ulp memfd is still open after ulpd's start"
	[ "$(ulp_maps)" = 0 ] || fail "recovery: the load's code is still mapped after ulpd's start"
	victim_ok
	runs v1 v2 || fail "recovery: not on the original"
	ok "ulpd's recovery closed the memfd and unmapped the code a killed apply left"
fi
echo "PASS"
