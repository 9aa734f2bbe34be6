#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# ulpctl on many processes at once (docs/performance.md): through ulpd and with --direct,
# a process whose transition waits for a straggler does not hold up the others; the
# limit on -p is named; and ulpctl talking to ulpd loads none of libelf, libdw, capstone.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
[ "$(id -u)" = 0 ] || skip "needs root"
tmp=$WORK
chmod 755 "$tmp"
# ulpd's log, whatever the outcome
on_exit() { cat "$tmp/log" 2>/dev/null; }
export ULP_SOCKET=$tmp/ulpd.sock

# The client alone: which shared objects it loads.
LD_DEBUG=files "$ULPCTL" status >"$tmp/ld" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "no ulpd answers on $ULP_SOCKET" "$tmp/ld" || fail "no daemon: rc $rc, $(tail -1 "$tmp/ld")"
grep -q 'file=libjson-c' "$tmp/ld" || fail "LD_DEBUG shows nothing: $(head -3 "$tmp/ld")"
! grep -E 'file=(libelf|libdw|libcapstone)' "$tmp/ld" || fail "ulpctl through ulpd loads the core's libraries"
ok "ulpctl through ulpd loads neither libelf, libdw nor capstone"
LD_DEBUG=files "$ULPCTL" info "$PATCH" >"$tmp/info" 2>&1 || fail "info: $(tail -1 "$tmp/info")"
grep -q 'file=libdw' "$tmp/info" && grep -q '^name: *daemon-fix$' "$tmp/info" || fail "info does not load the core"
ok "info loads the core when it needs it"

many=()
for i in $(seq 1025); do many+=(-p $((i + 1))); done
out=$("$ULPCTL" apply "${many[@]}" "$PATCH" 2>&1); rc=$?
[ $rc -eq 2 ] && [ "$out" = "ulpctl: too many -p: at most 1024 processes in one command" ] || fail "1025 -p: rc $rc, '$out'"
ok "a 1025th -p is refused with the limit named"

"$ULPD" --no-recover --patch-dir "" --socket "$ULP_SOCKET" --state-dir "$tmp/state" >"$tmp/log" 2>&1 &
PIDS+=($!)
wait_for 5 test -S "$ULP_SOCKET" || fail "ulpd did not start"
# A user other than root lists, in the client itself, the processes that carry a control
# block (libulp-carriers), to send ulpd proofs of access to them: still no core library.
LD_DEBUG=files setpriv --reuid=65534 --regid=65534 --clear-groups "$ULPCTL" status >"$tmp/ld-user" 2>&1 ||
	fail "status as nobody through ulpd: $(tail -1 "$tmp/ld-user")"
grep -q 'file=libjson-c' "$tmp/ld-user" || fail "LD_DEBUG shows nothing: $(head -3 "$tmp/ld-user")"
! grep -E 'file=(libelf|libdw|libcapstone)' "$tmp/ld-user" || fail "ulpctl listing carriers loads the core's libraries"
ok "ulpctl listing the processes that carry a control block loads neither libelf, libdw nor capstone"

# the first victim's sleeper holds outer() for HOLD s: its transition waits that long
N=6
HOLD=$((4 * SLOW))
start_victims() {   # $1: round; sets vp (the -p arguments) and vpids
	vp=(); vpids=()
	"$VICTIM" "$tmp/$1-0" 2 200 $((HOLD * 1000)) & PIDS+=($!); vp+=(-p $!); vpids+=($!)
	wait_for 5 grep -q 'sleeper=1' "$tmp/$1-0" || fail "the sleeper did not start"
	for i in $(seq $N); do
		"$VICTIM" "$tmp/$1-$i" 2 200 & PIDS+=($!); vp+=(-p $!); vpids+=($!)
	done
	for i in $(seq $N); do wait_for 5 grep -q 'v1=[1-9]' "$tmp/$1-$i" || fail "victim $i did not start"; done
}
patched_all() { for i in $(seq $N); do grep -q 'v2=[1-9]' "$tmp/$1-$i" || return 1; done; }

for mode in ulpd direct; do
	d=(); [ $mode = direct ] && d=(--direct)
	start_victims $mode
	t0=${EPOCHREALTIME/./}
	"$ULPCTL" "${d[@]}" apply "${vp[@]}" --timeout $((HOLD * 4)) "$PATCH" >"$tmp/out-$mode" 2>&1 &
	cp=$!
	wait_for $((HOLD / SLOW)) patched_all $mode || fail "$mode: the others were not all patched while the first waited"
	kill -0 $cp 2>/dev/null || fail "$mode: ulpctl ended before the others were seen patched: $(cat "$tmp/out-$mode")"
	ok "$mode: $N processes patched in $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms while the first waits for its straggler"
	wait $cp || fail "$mode apply: $(cat "$tmp/out-$mode")"
	[ "$(grep -c '^applied daemon-fix to process' "$tmp/out-$mode")" = $((N + 1)) ] || fail "$mode: $(cat "$tmp/out-$mode")"
	# one line per process, in the order given
	[ "$(grep -o 'process [0-9]*' "$tmp/out-$mode" | awk '{print "-p", $2}' | tr '\n' ' ')" = "${vp[*]} " ] ||
		fail "$mode: not in the order given: $(cat "$tmp/out-$mode")"
	"$ULPCTL" "${d[@]}" revert "${vp[@]}" daemon-fix >"$tmp/rv-$mode" 2>&1 || fail "$mode revert: $(cat "$tmp/rv-$mode")"
	ok "$mode: applied and reverted on $((N + 1)) processes, reported in order"
	for i in 0 $(seq $N); do grep -q 'bad=0' "$tmp/$mode-$i" || fail "$mode: victim $i saw a mixed-version call chain"; done
	kill "${vpids[@]}"
done
ok "no victim saw a mixed-version call chain"
