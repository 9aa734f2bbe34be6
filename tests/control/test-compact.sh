#!/usr/bin/env bash
# Compaction of the control block and code left mapped (docs/control-block.md,
# "Compaction"). ulpctl --direct is killed with SIGKILL right after each write of a
# compaction (control-killhook.so, ULP_KILL_AFTER_WRITE); the next plain ulpctl must find
# a block that checks out, the victim must run exactly the patches applied, and apply and
# revert must work. Then a revert killed between the end of its transition and the
# unmapping of the patch's code: status shows the code still mapped, and the next apply
# unmaps it.
#
# The victim is tests/core's (its main thread prints compute= and lib=); compute-fix and
# lib-fix replace functions of their own, so that reverting the first while the second
# stays leaves a hole in front of a live patch.
#
# Usage: test-compact.sh  (env from meson: ULPCTL, VICTIM, PATCH_COMPUTE, PATCH_LIB, KILLHOOK)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=

ulpctl() { "$ULPCTL" --direct "$@"; }
start_victim() {
	: >"$LOG"
	"$VICTIM" 2 >"$LOG" 2>&1 &
	VPID=$!
	wait_line 'tick' 5 || fail "victim did not start"
}
stop_victim() { kill -9 "$VPID" 2>/dev/null; wait "$VPID" 2>/dev/null; VPID=; }
# the victim alive, untraced, running, printing these values
runs() {
	victim_ok
	expect_value compute "$1"
	expect_value lib "$2"
}

# The writes of a compaction that moves records, the first of the apply that does it:
# the stage (one record of 248 bytes and one patch of 616), the header publishing it
# (seqlock begin of 20 bytes, 4096, end of 4), then the copy into place (begin, the
# record, the patch, the header, end). Dropping a tail is one header write.
STAGED="864 20 4096 4 20 248 616 4096 4"
TAIL="20 4096 4"

# compute-fix reverted in front of lib-fix: the next apply compacts by moving lib-fix
hole() {
	start_victim
	ulpctl apply -p "$VPID" "$PATCH_COMPUTE" >/dev/null || fail "apply compute-fix failed"
	ulpctl apply -p "$VPID" "$PATCH_LIB" >/dev/null || fail "apply lib-fix failed"
	ulpctl revert -p "$VPID" compute-fix >/dev/null || fail "revert compute-fix failed"
	runs 20 2010
}
# compute-fix reverted, alone: the next apply drops it from the tail
tail_only() {
	start_victim
	ulpctl apply -p "$VPID" "$PATCH_COMPUTE" >/dev/null || fail "apply compute-fix failed"
	ulpctl revert -p "$VPID" compute-fix >/dev/null || fail "revert compute-fix failed"
	runs 20 1010
}
first_writes() {
	awk -v n="$1" 'NR <= n { printf "%s%s", (NR > 1 ? " " : ""), $3 }' "$WORK/writes"
}

# The sequences, from a plain apply of each kind.
for kind in staged tail; do
	if [ $kind = staged ]; then hole; want=$STAGED; else tail_only; want=$TAIL; fi
	rm -f "$WORK/writes"
	hooked ULP_WRITE_LOG="$WORK/writes" "$ULPCTL" --direct apply -p "$VPID" "$PATCH_COMPUTE" ||
		fail "$kind: the plain apply failed: $(cat "$WORK/hooked.out")"
	got=$(first_writes "$(echo "$want" | wc -w)")
	[ "$got" = "$want" ] || fail "$kind: the compaction's writes are not as expected: $got (want $want)"
	stop_victim
done

trials=0 lost=0 wrong=0
for kind in staged tail; do
	if [ $kind = staged ]; then n=$(echo "$STAGED" | wc -w); else n=$(echo "$TAIL" | wc -w); fi
	for ((k = 1; k <= n; k++)); do
		what="$kind compaction, killed after its write $k"
		if [ $kind = staged ]; then hole; lib=2010; else tail_only; lib=1010; fi
		trials=$((trials + 1))
		kill_after_write "$k" "$what" "$ULPCTL" --direct apply -p "$VPID" "$PATCH_COMPUTE"
		out=$(ulpctl status -p "$VPID" 2>&1) || fail "$what: status refused the block: $out"
		grep -q 'refused' <<<"$out" && fail "$what: status refused the block: $out"
		if [ $kind = staged ]; then
			grep -qE '^  lib-fix: patched(, applied .*)?$' <<<"$out" || fail "$what: lib-fix is not patched: $out"
		fi
		runs 20 $lib || wrong=$((wrong + 1))
		out=$(ulpctl apply -p "$VPID" "$PATCH_COMPUTE" 2>&1) || fail "$what: the next apply failed: $out"
		runs 30 $lib
		out=$(ulpctl revert -p "$VPID" compute-fix 2>&1) || fail "$what: the revert failed: $out"
		runs 20 $lib
		if [ $kind = staged ]; then
			out=$(ulpctl revert -p "$VPID" lib-fix 2>&1) || fail "$what: the revert of lib-fix failed: $out"
			runs 20 1010
		fi
		ok "$what: the block checks out, apply and revert work"
		stop_victim
	done
done
echo "compaction kills: trials=$trials lost=$lost wrong=$wrong"

# A revert killed after the header that ends its transition, before the unmapping.
start_victim
ulpctl apply -p "$VPID" "$PATCH_COMPUTE" >/dev/null || fail "apply compute-fix failed"
rm -f "$WORK/writes"
hooked ULP_WRITE_LOG="$WORK/writes" "$ULPCTL" --direct revert -p "$VPID" compute-fix ||
	fail "the plain revert failed: $(cat "$WORK/hooked.out")"
# Two header writes (4096 bytes): init's, and finish's, which ends the transition; the
# unmapping comes after it. Killed right after the second (its seqlock still odd).
headers=$(awk '$3 == 4096' "$WORK/writes" | wc -l)
[ "$headers" = 2 ] || fail "the revert wrote the header $headers times, not 2: $(awk '{ printf "%s ", $3 }' "$WORK/writes")"
ulpctl apply -p "$VPID" "$PATCH_COMPUTE" >/dev/null || fail "the second apply failed"
hooked ULP_KILL_SIZE=4096 ULP_KILL_AFTER_WRITE=2 "$ULPCTL" --direct revert -p "$VPID" compute-fix
[ $? = 137 ] || fail "the revert was not killed: $(cat "$WORK/hooked.out")"
runs 20 1010
grep -q 'memfd:ulp-patch:compute-fix' "/proc/$VPID/maps" || fail "the killed revert did not leave the code mapped"
out=$(ulpctl status -p "$VPID" 2>&1) || fail "status failed: $out"
grep -qE '^  compute-fix: unpatched, its code still mapped(, applied .*)?$' <<<"$out" ||
	fail "status does not show the code left mapped: $out"
json=$(ulpctl status --json -p "$VPID" 2>&1) || fail "status --json failed: $json"
grep -q '"code_mapped": *true' <<<"$json" || fail "status --json does not say code_mapped: $json"
out=$(ulpctl apply -p "$VPID" "$PATCH_LIB" 2>&1) || fail "the apply after it failed: $out"
runs 20 2010
! grep -q 'memfd:ulp-patch:compute-fix' "/proc/$VPID/maps" || fail "the left code is still mapped after the next apply"
out=$(ulpctl status -p "$VPID" 2>&1)
! grep -q 'compute-fix' <<<"$out" || fail "compute-fix is still in status: $out"
out=$(ulpctl apply -p "$VPID" "$PATCH_COMPUTE" 2>&1) || fail "compute-fix does not apply again: $out"
runs 30 2010
ok "a revert killed before its unmapping: status shows the code, the next apply unmaps it"
echo "PASS"
