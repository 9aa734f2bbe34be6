#!/usr/bin/env bash
# Control-block windows (docs/control-block.md, "Order of writes"): ulpctl --direct is
# killed with SIGKILL right after chosen writes into the target (control-killhook.so,
# LD_PRELOAD, counting pwrites on /proc/PID/mem), then a plain ulpctl must find a block
# that checks out and finish what the dead driver was doing.
#
# cancel: the first entry write of transition_init fails (ULP_FAIL_WRITE), after the
# header named the patch and its record was marked in transition; the apply then cancels
# (transition_cancel). Killed inside and after the cancel's intent (header) and its record
# write (the header still naming the patch), a later revert must finish the cancel: the
# patch not applied, its code unmapped, the victim never running version 2.
#
# Usage: test-windows.sh  (env from meson: ULPCTL, VICTIM, PATCH, KILLHOOK)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
NAME=daemon-fix

ulpctl() { "$ULPCTL" --direct "$@"; }
# field KEY: this victim rewrites a status file instead of printing lines (lib.sh's
# field KEY LINE reads a line it is given).
field() { sed -n "s/.*\<$1=\([0-9]*\).*/\1/p" "$WORK/victim.status" 2>/dev/null; }
start_victim() {
	rm -f "$WORK/victim.status"
	"$VICTIM" "$WORK/victim.status" 2 200 &
	VPID=$!
	wait_for 10 eval '[ "$(field v1)" -gt 0 ]' || fail "victim did not start"
}
stop_victim() { kill -9 "$VPID" 2>/dev/null; wait "$VPID" 2>/dev/null; VPID=; }
alive() {
	kill -0 "$VPID" 2>/dev/null || return 1
	grep -q '^TracerPid:[[:space:]]*0$' "/proc/$VPID/status" || return 1
	local a
	a=$(field v1)
	wait_for 5 eval '[ "$(field v1)" -gt "'"${a:-0}"'" ]'
}
# the apply, with the write log, a failing write, a kill
apply() {
	env LD_PRELOAD="$KILLHOOK" "$@" "$ULPCTL" --direct apply --timeout 5 -p "$VPID" "$PATCH" >"$WORK/apply.out" 2>&1
}

# The writes of transition_init: the thread table (65536 bytes) and its states (8192),
# then each control write as the seqlock's begin (20 bytes), data, end (4): the header,
# the record; then the entries. A failed entry write is followed by init putting back
# the entries up to it (U: one write each). Those of the cancel: intent (header), record,
# header, the unmap's remote step (its frame, F), the record without its mapping.
INIT_HEAD="65536 8192 20 4096 4 20 616 4"
CANCEL="U 20 4096 4 20 616 4 20 4096 4 F 20 616 4"

start_victim
apply ULP_WRITE_LOG="$WORK/writes" || fail "the plain apply failed: $(cat "$WORK/apply.out")"
table=$(awk '$3 == 65536 { print $1; exit }' "$WORK/writes")
[ -n "$table" ] || fail "no thread table write"
head=$(awk -v t="$table" '$1 >= t && $1 < t + 8 { printf "%s%s", ($1 > t ? " " : ""), $3 }' "$WORK/writes")
[ "$head" = "$INIT_HEAD" ] || fail "transition_init's writes are not as expected: $head (want $INIT_HEAD)"
entry=$((table + 8))
stop_victim

start_victim
rm -f "$WORK/writes"
apply ULP_WRITE_LOG="$WORK/writes" ULP_FAIL_WRITE=$entry && fail "the apply with a failing entry write succeeded"
grep -q 'cannot start the transition' "$WORK/apply.out" || fail "the apply did not fail at init: $(cat "$WORK/apply.out")"
got=$(awk -v e="$entry" '$1 > e && $1 <= e + 14 { printf "%s%s", ($1 > e + 1 ? " " : ""), ($1 == e + 1 ? "U" : $1 == e + 11 ? "F" : $3) }' "$WORK/writes")
[ "$got" = "$CANCEL" ] || fail "the cancel's writes are not as expected: $got (want $CANCEL)"
[ "$(field v2)" = 0 ] || fail "the victim ran version 2 after a cancelled apply"
stop_victim

# inside the intent (its seqlock left odd), after it, inside the record, after it
for k in 3 4 6 7; do
	at=$((entry + k))
	case $k in
	3) what="inside the cancel's intent write" ;;
	4) what="after the cancel's intent" ;;
	6) what="inside the cancel's record write" ;;
	7) what="after the cancel's record" ;;
	esac
	start_victim
	apply ULP_FAIL_WRITE=$entry ULP_KILL_AFTER_WRITE=$at
	alive || fail "$what: the victim died, stopped or stayed traced"
	out=$(ulpctl status -p "$VPID" 2>&1) || fail "$what: status failed: $out"
	out=$(ulpctl revert --timeout 10 -p "$VPID" "$NAME" 2>&1) || fail "$what: revert failed: $out"
	grep -q "was being cancelled by its driver: cancel finished, the patch is not applied" <<<"$out" ||
		fail "$what: the revert did not finish the cancel: $out"
	out=$(ulpctl status -p "$VPID" 2>&1)
	! grep -q "$NAME" <<<"$out" || fail "$what: the patch is still there: $out"
	! grep -q 'ulp-patch' "/proc/$VPID/maps" || fail "$what: the patch's code is still mapped"
	[ "$(field v2)" = 0 ] || fail "$what: the victim ran version 2: $(cat "$WORK/victim.status")"
	[ "$(field bad)" = 0 ] || fail "$what: the victim ran a mix of versions"
	alive || fail "$what: the victim stopped making progress"
	echo "ok: killed $what (write $at): the revert finished the cancel"
	stop_victim
done

# The first bytes of the victim's function $1, as the process holds them.
code_of() {
	local exe base addr
	exe=$(readlink -f "$VICTIM")
	base=$(awk -v p="$exe" '$6 == p && $3 == "00000000" { sub(/-.*/, "", $1); print $1; exit }' "/proc/$VPID/maps")
	addr=$(nm "$VICTIM" | awk -v s="$1" '$3 == s { print $1 }')
	[ -n "$base" ] && [ -n "$addr" ] || fail "cannot find $1 in the victim"
	dd if="/proc/$VPID/mem" bs=16 count=1 iflag=skip_bytes skip=$((0x$base + 0x$addr)) 2>/dev/null | od -An -tx1
}

# A half-done init: the second entry write fails after the first put its stub in the
# path. Init puts that entry back before the cancel, so the code is as it was: the
# victim never runs version 2, and a later apply finds the entries it expects (one left
# pointing at the stub would be refused as "changed by someone else").
start_victim
code_before="$(code_of inner) $(code_of outer)"
apply ULP_FAIL_WRITE=$((entry + 1)) && fail "the apply with a failing second entry write succeeded"
grep -q 'cannot start the transition' "$WORK/apply.out" || fail "half-done init: the apply did not fail at init: $(cat "$WORK/apply.out")"
alive || fail "half-done init: the victim died, stopped or stayed traced"
[ "$(field v2)" = 0 ] || fail "half-done init: the victim ran version 2"
[ "$(code_of inner) $(code_of outer)" = "$code_before" ] ||
	fail "half-done init: the entries are not as they were: $(code_of inner) $(code_of outer) (were $code_before)"
! grep -q 'ulp-patch' "/proc/$VPID/maps" || fail "half-done init: the patch's code is still mapped"
out=$(ulpctl apply --timeout 10 -p "$VPID" "$PATCH" 2>&1) || fail "half-done init: the next apply failed: $out"
wait_for 10 eval '[ "$(field v2)" -gt 0 ]' || fail "half-done init: the next apply did not run version 2"
out=$(ulpctl revert --timeout 10 -p "$VPID" "$NAME" 2>&1) || fail "half-done init: the revert failed: $out"
[ "$(field bad)" = 0 ] || fail "half-done init: the victim ran a mix of versions"
alive || fail "half-done init: the victim stopped making progress"
echo "ok: a half-done init left every entry as it was; apply and revert work"
stop_victim

# A new block: the first apply to a process creates it. Killed right after the first
# seqlock write of the run (20 bytes) or the first header (4096), a later ulpctl must
# find no block or a whole one, never one it refuses: the first header is one write
# with no seqlock around it, as a seqlock write before it would leave a header
# without its magic ("malformed: bad magic", for good).
for k in 20 4096; do
	start_victim
	apply ULP_KILL_SIZE=$k ULP_KILL_AFTER_WRITE=1 && fail "create, kill at the first $k-byte write: the apply finished"
	alive || fail "create, kill at the first $k-byte write: the victim died, stopped or stayed traced"
	out=$(ulpctl status -p "$VPID" 2>&1)
	! grep -q 'refused\|malformed' <<<"$out" || fail "create, kill at the first $k-byte write: the block is refused: $out"
	out=$(ulpctl apply --timeout 10 -p "$VPID" "$PATCH" 2>&1) || fail "create, kill at the first $k-byte write: the next apply failed: $out"
	wait_for 10 eval '[ "$(field v2)" -gt 0 ]' || fail "create, kill at the first $k-byte write: no version 2"
	out=$(ulpctl revert --timeout 10 -p "$VPID" "$NAME" 2>&1) || fail "create, kill at the first $k-byte write: the revert failed: $out"
	[ "$(field bad)" = 0 ] || fail "create, kill at the first $k-byte write: the victim ran a mix of versions"
	echo "ok: killed at the first $k-byte write of a new block; a later apply and revert work"
	stop_victim
done
echo "PASS"
