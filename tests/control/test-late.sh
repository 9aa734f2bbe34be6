#!/usr/bin/env bash
# The records of an object loaded after its patch (docs/control-block.md, "Objects loaded
# later"), killed after each write: ulp_apply_late() (transition-pending, as ulpd runs
# it when the library appears) is killed with SIGKILL right after each of its writes into
# the victim (control-killhook.so, ULP_KILL_AFTER_WRITE). Each time the victim must be
# alive, untraced and consistent, status must read the block, the victim must run
# plugin_value's old version until the entry write and the new one from it; the next
# ulp_apply_late() must end the switch (or find it ended), leaving each function
# recorded once, or the revert or an apply of another patch coming next must end it
# itself; the revert must bring both functions back.
#
# The victim is the consistency victim (tests/victims), which dlopen()s libplugin.so on
# SIGHUP; the patch (tests/transition/patch-pending.c) replaces base_value in libtrbase.so
# and plugin_value in libplugin.so.
# Usage: test-late.sh  (env from meson: ULPCTL, VICTIM, PATCH_PENDING, PATCH_CONS, PENDING,
# KILLHOOK)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=

ulpctl() { "$ULPCTL" --direct "$@"; }
# shows KEY VALUE: the victim prints KEY=VALUE in a line printed from now on
shows() {
	local from
	from=$(wc -l <"$LOG")
	wait_for 5 eval "tail -n +$((from + 1)) \"\$LOG\" | grep -E '(^| )$1=$2( |\$)' >/dev/null"
}
start_loaded() {
	: >"$LOG"
	"$VICTIM" -n 2 >"$LOG" 2>&1 &
	VPID=$!
	wait_for 5 grep -q '^v1=' "$LOG" || fail "victim did not start"
	ulpctl apply -p "$VPID" "$PATCH_PENDING" >/dev/null || fail "apply failed"
	shows base 2 || fail "base_value not patched"
	kill -HUP "$VPID"
	shows plugin 100 || fail "libplugin.so not loaded"
}
stop_victim() { kill -9 "$VPID" 2>/dev/null; wait "$VPID" 2>/dev/null; VPID=; }
sizes() { awk '{ printf "%s%s", (NR > 1 ? " " : ""), $3 }' "$WORK/writes"; }

# The writes of a plain run: the areas' use and the relocated copy; the stage of the
# block with the new record (2 records of 248 bytes and the patch record of 616); the
# header publishing it (seqlock begin, 4096, end); the copy into place (begin, records,
# patch, header, end); the entry jump; the patch record with the object LOADED.
TAIL="1112 20 4096 4 20 496 616 4096 4 7 20 616 4"
start_loaded
rm -f "$WORK/writes"
hooked ULP_WRITE_LOG="$WORK/writes" "$PENDING" "$VPID" || fail "the plain run failed: $(cat "$WORK/hooked.out")"
shows plugin 200 || fail "the plain run did not patch plugin_value"
n=$(wc -l <"$WORK/writes")
got=$(sizes | awk -v k="$(echo "$TAIL" | wc -w)" '{ for (i = NF - k + 1; i <= NF; i++) printf "%s%s", $i, (i < NF ? " " : "") }')
[ "$got" = "$TAIL" ] || fail "the writes are not as expected: $(sizes) (want them to end in $TAIL)"
entry_write=$((n - 3)) patch_write=$((n - 1))
# the header write that publishes the stage: the first 4096 after the stage's write
first_publish=$(awk -v s="$((n - $(echo "$TAIL" | wc -w) + 1))" '$1 > s && $3 == 4096 { print $1; exit }' "$WORK/writes")
stop_victim

# After each kill, the next operation is ulp_apply_late() again (next=late), the patch's
# revert (next=revert) or the apply of another patch (next=apply: the consistency patch,
# outer/inner); the last two must end a switch left between the records and the entries
# before they go on.
trials=0 lost=0 wrong=0
for next in late revert apply; do
for ((k = 1; k <= n; k++)); do
	what="killed after write $k of $n, then $next"
	start_loaded
	trials=$((trials + 1))
	kill_after_write "$k" "$what" "$PENDING" "$VPID"
	victim_ok
	out=$(ulpctl status -p "$VPID" 2>&1) || fail "$what: status failed: $out"
	grep -q 'refused' <<<"$out" && fail "$what: status refused the block: $out"
	if [ "$k" -ge "$entry_write" ]; then want=200; else want=100; fi
	shows plugin $want || { wrong=$((wrong + 1)); fail "$what: plugin_value is not version $([ $want = 200 ] && echo 2 || echo 1)"; }
	if [ $next = apply ]; then
		out=$(ulpctl apply -p "$VPID" "$PATCH_CONS" 2>&1) || fail "$what: the apply failed: $out"
		shows v2 '[1-9][0-9]*' || { wrong=$((wrong + 1)); fail "$what: the consistency patch does not run"; }
		if [ "$k" -ge "$first_publish" ]; then want=200; else want=100; fi
		shows plugin $want || { wrong=$((wrong + 1)); fail "$what: plugin_value is not $want after the apply"; }
		out=$(ulpctl revert -p "$VPID" consistency 2>&1) || fail "$what: the revert of consistency failed: $out"
	fi
	if [ $next = late ]; then
		hooked "$PENDING" "$VPID"; rc=$?
		# the switch ended: nothing left to do, the object LOADED (watched for its
		# unloading, docs/late-callbacks.md), not a half-done switch
		if [ "$k" -ge "$patch_write" ]; then
			[ $rc = 1 ] && grep -q 'no pending object is loaded yet' "$WORK/hooked.out" ||
				fail "$what: the next run: exit $rc: $(cat "$WORK/hooked.out")"
		else
			[ $rc = 0 ] || fail "$what: the next run failed: $(cat "$WORK/hooked.out")"
		fi
		shows plugin 200 || { wrong=$((wrong + 1)); fail "$what: plugin_value not patched after the next run"; }
		shows base 2 || { wrong=$((wrong + 1)); fail "$what: base_value lost its patch"; }
		out=$(ulpctl status -p "$VPID" 2>&1) || fail "$what: status failed: $out"
		grep -q 'late objects' <<<"$out" && fail "$what: still waiting for libplugin.so: $out"
		[ "$(grep -c 'libplugin.so:plugin_value' <<<"$out")" = 1 ] || fail "$what: plugin_value not recorded once: $out"
	fi
	out=$(ulpctl revert -p "$VPID" pending 2>&1) || fail "$what: the revert failed: $out"
	shows plugin 100 && shows base 1 || { wrong=$((wrong + 1)); fail "$what: the revert did not restore both"; }
	grep -q 'memfd:ulp-patch:pending' "/proc/$VPID/maps" && fail "$what: the patch is still mapped after its revert"
	grep -q 'mixed=[1-9]' "$LOG" && fail "$what: mixed calls: $(grep 'mixed=[1-9]' "$LOG" | head -1)"
	victim_ok
	ok "$what: both functions patched, then restored by the revert"
	stop_victim
done
done
echo "late-object kills: trials=$trials lost=$lost wrong=$wrong"
echo "PASS"
