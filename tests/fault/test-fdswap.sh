#!/usr/bin/env bash
# A process that puts another file at the number of the memfd a patch load makes in it
# (dup2 from another thread, the moment the number comes into use): ulp, running as
# root, must never write the patch into that file (docs/security.md, "The target's
# descriptors"). The victim, of uid 65534, holds read-only a file of root's (mode 0644,
# a line of /etc/passwd's form) and races every load when armed
# (tests/fault/victim-fdswap.c). For ulpctl --direct as root, then for the user through
# ulpd: the file keeps its bytes, the apply is refused, the victim lives and runs the
# original; a load the victim did not get to race is applied. With --direct the
# patcher pauses once the memfd is made (tests/fault/ptrace-kill.so), so that the swap
# comes before the copy and the refusal is the copy's own line; through ulpd the swap
# comes whenever the victim's thread runs (a swap after the copy makes the process map
# its own file, which the load refuses too).
# Usage: test-fdswap.sh  (env from meson: ULPCTL, ULPD, FDSWAP_VICTIM, PATCH_COMPUTE, FAULTLIB)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
[ "$EUID" = 0 ] || skip "needs root (ulp acting for another user)"
fail_details() {
	echo "--- the victim's swaps, and its last lines:"
	grep '^swapped' "$LOG"
	tail -n 3 "$LOG"
}
USER_IDS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
chmod 755 "$WORK"
FILE=$WORK/roots-file
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$FILE"
chmod 644 "$FILE"
SUM=$(sha256sum <"$FILE")
mkfifo "$WORK/in"
"${USER_IDS[@]}" "$FDSWAP_VICTIM" "$FILE" <"$WORK/in" >"$LOG" 2>&1 &
VPID=$!
exec 3>"$WORK/in"
wait_line '^compute=2$' 10 || fail "the victim did not start"
export ULP_SOCKET=$WORK/ulpd.sock
"$ULPD" --no-recover --patch-dir "" --socket "$ULP_SOCKET" --state-dir "$WORK/state" >"$WORK/ulpd.log" 2>&1 &
PIDS+=($!)
wait_for 10 test -S "$ULP_SOCKET" || fail "ulpd did not start: $(cat "$WORK/ulpd.log")"
WANT="is not the memfd made for the patch any more (the process put another file at that number); nothing was written"

apply() {
	if [ "$1" = direct ]; then
		# a pause after the memfd is made (memfd_create is system call 319): the victim's
		# thread gets there before the copy, however loaded the machine is
		env LD_PRELOAD="$FAULTLIB" ULP_FAULT_PAUSE_SYSCALL=319 ULP_FAULT_PAUSE_US=$((100000 * SLOW)) \
			"$ULPCTL" --direct apply -p "$VPID" "$PATCH_COMPUTE" 2>&1
	else
		"${USER_IDS[@]}" "$ULPCTL" apply -p "$VPID" "$PATCH_COMPUTE" 2>&1
	fi
}
revert() {
	if [ "$1" = direct ]; then
		"$ULPCTL" --direct revert -p "$VPID" compute-fix 2>&1
	else
		"${USER_IDS[@]}" "$ULPCTL" revert -p "$VPID" compute-fix 2>&1
	fi
}

# race MODE: armed loads until one is refused for the swap (up to 5); 0 when one was.
# Whatever the outcome, root's file keeps its bytes and the victim lives. The swap may
# come late (the victim's thread not run in time): after the load mapped the memfd, the
# apply goes on with the patch it loaded, and is taken back for the next try.
race() {
	local mode=$1 from out rc
	for try in 1 2 3 4 5; do
		from=$(lines)
		echo arm >&3
		sleep 0.1
		out=$(apply "$mode")
		rc=$?
		[ "$(sha256sum <"$FILE")" = "$SUM" ] ||
			fail "$mode: the patch was written into root's file: $(head -c 32 "$FILE" | od -An -c | head -2)"
		kill -0 "$VPID" 2>/dev/null || fail "$mode: the victim died: $out"
		if [ $rc -ne 0 ]; then
			line_after '^swapped' "$from" || fail "$mode: refused though the victim swapped nothing: $out"
			wait_line '^compute=2$' 5 "$(lines)" || fail "$mode: the victim does not run the original after the refusal"
			[[ $out == *"$WANT"* ]] && early=$((early + 1))
			ok "$mode (try $try): the memfd swapped for root's file: refused, the file unchanged: ${out##*: }"
			return 0
		fi
		wait_line '^compute=3$' 5 "$(lines)" || fail "$mode: the victim does not run the patch it was applied"
		out=$(revert "$mode") || fail "$mode: revert failed: $out"
		wait_line '^compute=2$' 5 "$(lines)" || fail "$mode: the victim does not run the original after the revert"
	done
	return 1
}

# The control block first, unraced: its memfd is made at the same number, and a swap
# of it is only refused (its mapping is private: no write of ulp reaches the file).
out=$(apply direct) || fail "the first apply failed: $out"
wait_line '^compute=3$' 5 || fail "the victim does not run the patch"
out=$(revert direct) || fail "revert failed: $out"
raced=0 early=0
for mode in direct ulpd; do
	race "$mode" && raced=$((raced + 1))
done
[ $raced -gt 0 ] || skip "the victim's thread never swapped the memfd before a load used it, in 10 loads (no CPU for it?)"
[ $raced -eq 2 ] || echo "note: only $raced of the 2 modes were raced in time"
# With the pause, --direct's swap comes before the copy: refused by the copy's check.
[ $early -gt 0 ] || echo "note: no refusal came from the copy's own check (the swaps came after it)"
echo "PASS: fdswap"
