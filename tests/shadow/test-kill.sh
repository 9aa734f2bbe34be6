#!/usr/bin/env bash
# The patcher killed while it maps the shadow-variable runtime (docs/shadow.md, "How it
# gets there"): the first apply of a patch using shadow variables maps the runtime with
# remote system calls (memfd_create, mmap of its segments, close) on a borrowed thread,
# then records it in the control block's header. ulpctl --direct is killed with SIGKILL
# right after ptrace calls of that step (tests/fault/ptrace-kill.so, the N-th call of
# any request; every SHADOW_KILL_STRIDE-th, default 4, which is prime to the 15 calls of
# one remote system call, so that each kind of call is hit) and right after each of its
# writes into the victim (control-killhook.so: the memfd's name, the steps' frames, the
# header). Each time: the victim lives, untraced, still the original; status reads it; a
# later apply of the same patch works, its counters count, and the process holds one
# runtime (as many runtime mappings as after a plain apply), not two; its revert works.
# Usage: test-kill.sh  (env from meson: ULPCTL, PATCHDIR, VICTIM, FAULTLIB, KILLHOOK)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=
P=$PATCHDIR
STRIDE=${SHADOW_KILL_STRIDE:-4}

ulpctl() { "$ULPCTL" --direct "$@"; }
last() { grep -E '^tick=' "$LOG" | tail -n 1; }
version_is() { last | grep " version=$1 " >/dev/null; }
audit_sum() { last | sed -n 's/.*audit=\([^ ]*\).*/\1/p' | tr ',' '\n' | awk '{ s += $1 } END { print s }'; }
runtime_maps() { grep -c 'ulp-patch:ulp-shadow-runtime' "/proc/$VPID/maps"; }
start_victim() {
	: >"$LOG"
	"$VICTIM" >"$LOG" 2>&1 &
	VPID=$!
	wait_line '^tick=' 5 || fail "the victim did not start"
}
stop_victim() { kill -9 "$VPID" 2>/dev/null; wait "$VPID" 2>/dev/null; VPID=; }

# A plain apply: its ptrace calls and its writes, and the runtime's mappings.
start_victim
env LD_PRELOAD="$FAULTLIB" ULP_FAULT_LOG="$WORK/calls" "$ULPCTL" --direct apply -p "$VPID" "$P/shadow-patch-count.so" \
	>/dev/null || fail "the plain apply failed"
maps=$(runtime_maps)
[ "$maps" -gt 0 ] || fail "the plain apply mapped no runtime"
stop_victim
start_victim
env LD_PRELOAD="$KILLHOOK" ULP_WRITE_LOG="$WORK/writes" "$ULPCTL" --direct apply -p "$VPID" "$P/shadow-patch-count.so" \
	>/dev/null || fail "the plain apply (writes) failed"
stop_victim

# The step's ptrace calls: from the remote memfd_create (system call 319) of the runtime,
# the second (the control block's is the first), to the one of the patch, the third;
# each remote system call starts with GETREGS, GETSIGMASK, GETREGSET before its SETREGS.
read -r m2 m3 < <(grep -n 'SETREGS 0 rax=319$' "$WORK/calls" | sed -n '2p;3p' | cut -d: -f1 | tr '\n' ' ')
[ -n "${m3:-}" ] || fail "the plain apply did not make three memfd_create calls: $(grep -c 'rax=319' "$WORK/calls")"
first_call=$((m2 - 3)) last_call=$((m3 - 4))
# The step's writes: from the runtime memfd's name (29 bytes with its NUL) to the end of
# the seqlock around the header naming the runtime (20, 4096, 4).
first_write=$(awk '$3 == 29 { print $1; exit }' "$WORK/writes")
last_write=$(awk -v f="${first_write:-0}" '$1 > f && $3 == 4096 { print $1 + 1; exit }' "$WORK/writes")
[ -n "$first_write" ] && [ -n "$last_write" ] || fail "the runtime's writes not found: $(awk '{ printf "%s ", $3 }' "$WORK/writes")"
[ "$(awk -v l="$last_write" '$1 == l - 2 || $1 == l { printf "%s ", $3 }' "$WORK/writes")" = "20 4 " ] ||
	fail "the runtime's header is not one seqlock write: $(awk '{ printf "%s ", $3 }' "$WORK/writes")"
echo "the runtime's step: ptrace calls $first_call..$last_call, writes $first_write..$last_write"

trials=0 lost=0 wrong=0
# trial WHAT LIB ENV...: the apply, LIB preloaded, killed as ENV says; then the checks
trial() {
	local what=$1 lib=$2 rc out; shift 2
	start_victim
	trials=$((trials + 1))
	env LD_PRELOAD="$lib" "$@" "$ULPCTL" --direct apply -p "$VPID" "$P/shadow-patch-count.so" >"$WORK/out" 2>&1; rc=$?
	[ $rc = 137 ] || fail "$what: ulpctl was not killed (exit $rc): $(cat "$WORK/out")"
	kill -0 "$VPID" 2>/dev/null || { lost=$((lost + 1)); fail "$what: the victim died"; }
	victim_ok
	wait_line '^tick=' 5 "$(lines)" || fail "$what: the victim stopped ticking"
	version_is 0 || { wrong=$((wrong + 1)); fail "$what: not the original: $(last)"; }
	out=$(ulpctl status -p "$VPID" 2>&1) || fail "$what: status failed: $out"
	grep -q 'refused' <<<"$out" && fail "$what: status refused the block: $out"
	out=$(ulpctl apply -p "$VPID" "$P/shadow-patch-count.so" 2>&1) || fail "$what: the next apply failed: $out"
	wait_for 5 version_is 1 || { wrong=$((wrong + 1)); fail "$what: the patch does not run: $(last)"; }
	wait_for 10 eval '[ "$(audit_sum)" -ge 8 ]' || fail "$what: the counters do not count: $(last)"
	[ "$(runtime_maps)" = "$maps" ] ||
		fail "$what: $(runtime_maps) runtime mappings, $maps after a plain apply: $(grep ulp-shadow-runtime "/proc/$VPID/maps")"
	ulpctl status -p "$VPID" | grep -E '^  shadow variables: 4 \(32 bytes;' >/dev/null ||
		fail "$what: status: $(ulpctl status -p "$VPID")"
	out=$(ulpctl revert -p "$VPID" shadow-count 2>&1) || fail "$what: the revert failed: $out"
	wait_for 5 version_is 0 || { wrong=$((wrong + 1)); fail "$what: not the original after the revert: $(last)"; }
	victim_ok
	ok "$what: the victim lives; the next apply binds to one runtime"
	stop_victim
}

for ((n = first_call; n <= last_call; n += STRIDE)); do
	trial "killed after ptrace call $n ($(sed -n "${n}p" "$WORK/calls" | cut -d' ' -f1))" \
		"$FAULTLIB" ULP_FAULT_REQUEST=ANY ULP_FAULT_N=$n
done
for ((n = first_write; n <= last_write; n++)); do
	trial "killed after write $n ($(awk -v n=$n '$1 == n { print $3 }' "$WORK/writes") bytes)" \
		"$KILLHOOK" ULP_KILL_AFTER_WRITE=$n
done
echo "shadow runtime kills: trials=$trials lost=$lost wrong=$wrong"
echo "PASS"
