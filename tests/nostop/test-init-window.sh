#!/usr/bin/env bash
# The driver killed inside the int3 window of a transition's init (docs/stops.md, "The
# untabled state"): right after it started the remote membarrier that serializes the
# cores once the int3 bytes and the SIGTRAP guard are in (ptrace-kill.so: the N-th
# SETREGS, N read from the log of an apply made just before). The victim (4 workers
# checking their own consistency) lives on with the guard in, untraced, never mixing;
# a plain status reads it; the next revert closes the window (the guard goes, the
# program's SIGTRAP disposition is back), takes the transition over and leaves the
# original code running; a later apply and revert work.
# With "end": the same inside completion's window (CT_FLAG_END_WINDOW), which writes the
# final entries after the process was sealed and every thread switched: the first
# serialization of the last window of the apply.
# Usage: test-init-window.sh [init|end]   (env from meson: ULPCTL, VICTIM, PATCH, FAULTLIB)
set -uo pipefail
WINDOW=${1:-init}
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# Init without a stop of every thread is not on by default yet (docs/stops.md).
export ULP_NOSTOP_INIT=1
VPID=

ulpctl() { "$ULPCTL" --direct "$@"; }
no_mix() { fresh; [ "$(now mixed)" = 0 ] || fail "mixed calls: $(now mixed)"; }
# SIGTRAP (5) caught: bit 4 of SigCgt.
sigtrap_caught() { (( 0x$(awk '/^SigCgt:/ {print $2}' "/proc/$VPID/status") & 0x10 )); }
tracer() { awk '/^TracerPid:/ {print $2}' "/proc/$VPID/status"; }

"$VICTIM" -n 4 >"$LOG" 2>&1 &
VPID=$!
wait_line '^v1=' 5 || fail "victim did not start"
sigtrap_caught && fail "the victim catches SIGTRAP before any window"

# Where the window's serialization is: the second remote membarrier (324) of an apply
# (the first registers the process for it), in an apply like the one killed: not the
# first, which also creates the control block.
ulpctl apply -p "$VPID" "$PATCH" >/dev/null 2>&1 || fail "first apply failed"
ulpctl revert -p "$VPID" consistency >/dev/null 2>&1 || fail "first revert failed"
ULP_FAULT_LOG=$WORK/calls LD_PRELOAD=$FAULTLIB ulpctl apply -p "$VPID" "$PATCH" >/dev/null 2>&1 ||
	fail "logged apply failed"
rises v2 3 || fail "the patch does not run"
ulpctl revert -p "$VPID" consistency >/dev/null 2>&1 || fail "revert after the logged apply failed"
# Each window serializes three times (after the int3 bytes, after the rest, after the
# first bytes): completion's first is the third from the end.
# Counted among the membarriers only (ULP_FAULT_RAX): the calls before them vary with
# the passes an apply takes.
kill_rax=
if [ "$WINDOW" = end ]; then
	m=$(grep -c 'rax=324$' "$WORK/calls")
	[ "$m" -ge 7 ] || fail "no completion window in the logged apply: $m serializations"
	n=$((m - 2)) kill_rax=324
else
	n=$(grep '^SETREGS ' "$WORK/calls" | grep -n 'rax=324$' | sed -n 2p | cut -d: -f1)
fi
[ -n "$n" ] || skip "no int3 window in an apply (the kernel lacks membarrier SYNC_CORE: init stops every thread)"

env LD_PRELOAD="$FAULTLIB" ULP_FAULT_REQUEST=SETREGS ULP_FAULT_N="$n" ULP_FAULT_RAX="$kill_rax" "$ULPCTL" --direct apply -p "$VPID" "$PATCH" \
	>"$WORK/out" 2>&1 && fail "the apply was not killed: $(cat "$WORK/out")"
wait_for 5 eval '[ "$(tracer)" = 0 ]' || fail "the victim stays traced by $(tracer)"
sigtrap_caught || fail "the kill did not land inside the window (no guard in the victim)"
st=$(awk '{print $3}' "/proc/$VPID/stat")
case "$st" in t|T|Z|X|"") fail "victim in state '$st' after the kill" ;; esac
rises v1 3 || rises v2 3 || fail "the victim makes no progress with the window open"
no_mix
ulpctl status -p "$VPID" >"$WORK/status" 2>&1 || fail "status failed: $(cat "$WORK/status")"

# The completion window's int3 bytes are taken out by the takeover (transition_resume),
# before the revert's own init, made here under a stop of every thread; its guard goes
# then, or with the revert's completion window at the latest.
recover_init=1
[ "$WINDOW" = end ] && recover_init=0
ULP_NOSTOP_INIT=$recover_init ulpctl revert -p "$VPID" consistency >"$WORK/out" 2>&1 ||
	fail "revert after the kill failed: $(cat "$WORK/out")"
sigtrap_caught && fail "the guard stays in after the revert"
rises v1 3 || fail "the original does not run after the revert"
steady v2 || fail "the patch still runs after the revert"
no_mix
ulpctl apply -p "$VPID" "$PATCH" >"$WORK/out" 2>&1 || fail "apply after the recovery failed: $(cat "$WORK/out")"
rises v2 3 || fail "the patch does not run"
ulpctl revert -p "$VPID" consistency >"$WORK/out" 2>&1 || fail "last revert failed: $(cat "$WORK/out")"
steady v2 || fail "the patch still runs after the last revert"
no_mix
kill -0 "$VPID" || fail "victim died"
echo "PASS: killed at SETREGS #$n, inside the $WINDOW window; closed by the next revert"
