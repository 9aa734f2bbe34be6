#!/usr/bin/env bash
# End-to-end cases: a real multithreaded victim, patched with ulpctl --direct. Each
# case checks what the victim itself prints, not only what ulpctl says.
# Usage: run.sh CASE   (env: ULPCTL, VICTIM, PATCHDIR from meson)
set -uo pipefail

CASE=$1
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=

ulpctl() { "$ULPCTL" --direct "$@"; }

start_victim() {
	: >"$LOG"   # emptied before: the job truncates it only once it runs
	"$VICTIM" "${1:-4}" >"$LOG" 2>&1 &
	VPID=$!
	wait_line 'tick' 5 || fail "victim did not start"
}

no_ulp_mappings() {
	! grep -q 'memfd:ulp' "/proc/$VPID/maps" || fail "ulp mappings left in the victim: $(grep memfd:ulp /proc/$VPID/maps)"
}

P=$PATCHDIR

case_apply_revert() {
	start_victim 4
	expect_value compute 20
	ulpctl apply -p "$VPID" "$P/patch-compute.so" || fail "apply failed"
	victim_ok
	expect_value compute 30
	ulpctl revert -p "$VPID" compute-fix || fail "revert failed"
	victim_ok
	expect_value compute 20
	# Revert by file works as well.
	ulpctl apply -p "$VPID" "$P/patch-compute.so" || fail "second apply failed"
	expect_value compute 30
	ulpctl revert -p "$VPID" "$P/patch-compute.so" || fail "revert by file failed"
	expect_value compute 20
	victim_ok
}

# round_trip KEY BEFORE PATCH NAME AFTER: the victim shows KEY=BEFORE, KEY=AFTER once
# PATCH is applied, KEY=BEFORE again once NAME is reverted.
round_trip() {
	start_victim 4
	expect_value "$1" "$2"
	ulpctl apply -p "$VPID" "$P/$3" || fail "apply failed"
	expect_value "$1" "$5"
	ulpctl revert -p "$VPID" "$4" || fail "revert failed"
	expect_value "$1" "$2"
	victim_ok
}

case_static() { round_trip static 111 patch-static.so static-fix 210; }
case_library() { round_trip lib 1010 patch-lib.so lib-fix 2010; }
# target_helper(10) + secret * 1000 = 107 + 7000
case_ref() { round_trip ref 10 patch-ref.so ref-fix 7107; }

# How the core gets capstone (patcher/x86_64/insn.c, meson.build; ULP_CAPSTONE):
# - static: its x86 decoder is linked in, the other architectures kept out: the core's
#   module holds a few thousand relocations, not the shared library's 77,000; no command
#   loads the shared library, and with it hidden (an empty file bound over it in a mount
#   namespace of their own) an apply and a revert work;
# - shared: loaded by the first decoding: an apply loads it, a revert does not; hidden,
#   a revert works and an apply is refused with the reason, before anything is written.
case_decoder() {
	local out lib relocs
	lib=$(ldconfig -p | awk '/libcapstone\.so\.[0-9]+ .*x86-64/ { print $NF; exit }')
	[ -f "$lib" ] || fail "no capstone library found by ldconfig"
	start_victim 4
	expect_value compute 20
	out=$(LD_DEBUG=files ulpctl apply -p "$VPID" "$P/patch-compute.so" 2>&1) || fail "apply failed: $out"
	if [ "$ULP_CAPSTONE" = static ]; then
		! grep -q 'file=libcapstone' <<<"$out" || fail "the apply loaded capstone's shared library"
		relocs=$(readelf -rW "$ULPCTL_DIRECT_SO" | grep -c 'R_X86_64_') || fail "readelf -r $ULPCTL_DIRECT_SO"
		[ "$relocs" -lt 10000 ] || fail "$ULPCTL_DIRECT_SO has $relocs relocations: capstone's other architectures were linked in"
		echo "# $ULPCTL_DIRECT_SO: $relocs relocations"
	else
		grep -q 'file=libcapstone' <<<"$out" || fail "the apply did not load capstone"
	fi
	expect_value compute 30
	out=$(LD_DEBUG=files ulpctl revert -p "$VPID" compute-fix 2>&1) || fail "revert failed: $out"
	! grep -q 'libcapstone' <<<"$out" || fail "the revert loaded capstone: $(grep libcapstone <<<"$out" | head -n 3)"
	expect_value compute 20
	ulpctl apply -p "$VPID" "$P/patch-compute.so" || fail "second apply failed"
	expect_value compute 30
	unshare -m bash -c 'mount --bind /dev/null "$1" && exec "$2" --direct revert -p "$3" compute-fix' \
		sh "$lib" "$ULPCTL" "$VPID" || fail "the revert without capstone failed"
	expect_value compute 20
	if [ "$ULP_CAPSTONE" = static ]; then
		unshare -m bash -c 'mount --bind /dev/null "$1" && exec "$2" --direct apply -p "$3" "$4"' \
			sh "$lib" "$ULPCTL" "$VPID" "$P/patch-compute.so" || fail "the apply without capstone's shared library failed"
		expect_value compute 30
		ulpctl revert -p "$VPID" compute-fix || fail "revert failed"
		expect_value compute 20
		victim_ok
		return
	fi
	victim_ok
	kill -9 "$VPID"; wait "$VPID" 2>/dev/null
	start_victim 4
	refused "apply without capstone" \
		"^ulpctl: cannot redirect compute: cannot open capstone: $lib: file too short\$" \
		unshare -m bash -c 'mount --bind /dev/null "$1" && exec "$2" --direct apply -p "$3" "$4"' \
		sh "$lib" "$ULPCTL" "$VPID" "$P/patch-compute.so"
	no_ulp_mappings
	expect_value compute 20
}

json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

case_json_status() {
	start_victim 6
	local out
	out=$(ulpctl apply --json -p "$VPID" "$P/patch-compute.so") || fail "apply failed: $out"
	[ "$(echo "$out" | json_get 'd["threads"]')" -ge 7 ] || fail "threads in $out"
	for k in retries max_thread_stop_us max_stw_us total_ms; do
		echo "$out" | json_get "d['$k']" >/dev/null || fail "no $k in $out"
	done
	# By default (or with ULP_NOSTOP_INIT=1), in a process of more than one thread, init
	# and completion never stop every thread at once (docs/stops.md, "The untabled
	# state", "Completion under the clone barrier"); with =0 both stop every thread.
	if [ "${ULP_NOSTOP_INIT:-1}" = 1 ]; then
		[ "$(echo "$out" | json_get 'd["max_stw_us"]')" = 0 ] || fail "a stop of every thread without ULP_NOSTOP_INIT=0: $out"
		out=$(ULP_NOSTOP_INIT=0 ulpctl revert --json -p "$VPID" compute-fix) || fail "revert with ULP_NOSTOP_INIT=0 failed: $out"
		[ "$(echo "$out" | json_get 'd["max_stw_us"] > 0')" = True ] || fail "no stop-the-world figure with ULP_NOSTOP_INIT=0: $out"
		expect_value compute 20
		out=$(ulpctl apply --json -p "$VPID" "$P/patch-compute.so") || fail "apply failed: $out"
		[ "$(echo "$out" | json_get 'd["max_stw_us"]')" = 0 ] || fail "a stop of every thread without ULP_NOSTOP_INIT=0: $out"
		expect_value compute 30
	else
		[ "$(echo "$out" | json_get 'd["max_stw_us"] > 0')" = True ] || fail "no stop-the-world figure: $out"
	fi
	out=$(ulpctl status --json -p "$VPID") || fail "status failed"
	[ "$(echo "$out" | json_get 'd["processes"][0]["patches"][0]["state"]')" = patched ] || fail "status: $out"
	[ "$(echo "$out" | json_get 'd["processes"][0]["patches"][0]["name"]')" = compute-fix ] || fail "status: $out"
	# captured first: the listing of every process on a shared machine can be long, and
	# grep -q leaving early would fail the pipeline with ulpctl's SIGPIPE
	out=$(ulpctl status) || fail "status (all processes) failed: $(echo "$out" | tail -n 3)"
	[ "$(grep -A1 "^process $VPID " <<<"$out" | grep -c "compute-fix: patched")" = 1 ] ||
		fail "status (all processes) does not list it under pid $VPID"
	ulpctl revert -p "$VPID" compute-fix || fail "revert failed"
	out=$(ulpctl status --json -p "$VPID")
	[ "$(echo "$out" | json_get '"patched" in [p["state"] for p in d["processes"][0]["patches"]]')" = False ] || fail "still patched: $out"
	# Global mode stops every thread at once by definition: reported.
	out=$(ulpctl apply --global --json -p "$VPID" "$P/patch-compute.so") || fail "global apply failed: $out"
	[ "$(echo "$out" | json_get 'd["max_stw_us"] > 0')" = True ] || fail "a global apply reports no stop of every thread: $out"
	ulpctl revert -p "$VPID" compute-fix >/dev/null || fail "revert of the global apply failed"
	victim_ok
	# A process of one thread: its stop is a stop of every thread whichever way init
	# goes; the stop-all init checks and completes in that one stop (reported), and
	# ULP_NOSTOP_INIT=1 asks for the window there too (never counted as a stop of every
	# thread).
	kill -9 "$VPID"; wait "$VPID" 2>/dev/null
	start_victim 0
	out=$(ulpctl apply --json -p "$VPID" "$P/patch-compute.so") || fail "apply to one thread failed: $out"
	[ "$(echo "$out" | json_get 'd["threads"]')" = 1 ] || fail "threads of a one-thread victim in $out"
	if [ "${ULP_NOSTOP_INIT:-}" = 1 ]; then
		[ "$(echo "$out" | json_get 'd["max_stw_us"]')" = 0 ] || fail "the window counted as a stop of every thread: $out"
	else
		[ "$(echo "$out" | json_get 'd["max_stw_us"] > 0')" = True ] || fail "one thread not stopped by the stop-all init: $out"
	fi
	expect_value compute 30
	ulpctl revert -p "$VPID" compute-fix >/dev/null || fail "revert of the one-thread apply failed"
	expect_value compute 20
	victim_ok
}

# refused WHAT REGEX CMD...: expect_refusal (lib.sh), and the victim unchanged.
refused() {
	expect_refusal "$@"
	victim_ok
}

case_bad_input() {
	start_victim 4
	printf 'not an elf\n' >"$WORK/text.so"
	# pid_max itself is never a process id (they stay below it)
	local nopid
	nopid=$(cat /proc/sys/kernel/pid_max)
	refused "no such pid" "^ulpctl: no process with pid $nopid\$" ulpctl apply -p "$nopid" "$P/patch-compute.so"
	refused "not ELF" '^ulpctl: text\.so is not an ELF file$' ulpctl apply -p "$VPID" "$WORK/text.so"
	refused "no metadata" \
		'^ulpctl: patch-nometa\.so has no ulp patch metadata \(no ULP_FUNC\)$' ulpctl apply -p "$VPID" "$P/patch-nometa.so"
	refused "missing symbol" \
		'^ulpctl: function no_such_function not found in the main executable \(/.*/core-victim\)$' ulpctl apply -p "$VPID" "$P/patch-nosym.so"
	refused "build-id" \
		'^ulpctl: build-id mismatch for the main executable: the patch is for 00112233445566778899aabbccddeeff00112233, the process has [0-9a-f]{40}$' \
		ulpctl apply -p "$VPID" "$P/patch-badbid.so"
	refused "too small" \
		'^ulpctl: function tiny is too small to patch \(3 bytes, a jump needs 5\): the byte 0x00 at \+0x3 after it is not padding$' ulpctl apply -p "$VPID" "$P/patch-tiny.so"
	refused "revert unknown" "^ulpctl: process $VPID carries no ulp patch\$" ulpctl revert -p "$VPID" compute-fix
	no_ulp_mappings
	expect_value compute 20
	# setpriv is in util-linux, a dependency (scripts/setup-deps.sh)
	refused "no permission" "^ulpctl: not allowed to trace process $VPID \\(the kernel's ptrace access check for this user: its user ids are not all yours\\)\$" \
		setpriv --reuid=65534 --regid=65534 --clear-groups "$ULPCTL" --direct apply -p "$VPID" "$P/patch-compute.so"
	no_ulp_mappings
	ulpctl apply -p "$VPID" "$P/patch-compute.so" || fail "apply failed"
	refused "applied twice" "^ulpctl: patch compute-fix is already applied to process $VPID\$" ulpctl apply -p "$VPID" "$P/patch-compute.so"
	expect_value compute 30
	# A process that exits: the pid is gone by the time ulpctl looks.
	sleep 0.2 & local gone=$!; wait $gone
	refused "exited pid" "^ulpctl: no process with pid $gone\$" ulpctl apply -p "$gone" "$P/patch-compute.so"
	local rc
	"$ULPCTL" --direct 2>/dev/null; rc=$?
	[ "$rc" -eq 2 ] || fail "usage error exit $rc, expected 2"
}

case_stacked() {
	start_victim 4
	ulpctl apply -p "$VPID" "$P/patch-compute.so" || fail "apply A failed"
	expect_value compute 30
	ulpctl apply -p "$VPID" "$P/patch-compute2.so" || fail "apply B failed"
	expect_value compute 40
	refused "revert A under B" \
		'^ulpctl: patch compute-fix2 also replaces compute and was applied later: revert it first$' ulpctl revert -p "$VPID" compute-fix
	ulpctl revert -p "$VPID" compute-fix2 || fail "revert B failed"
	expect_value compute 30
	ulpctl revert -p "$VPID" compute-fix || fail "revert A failed"
	expect_value compute 20
	victim_ok
}

# Apply/revert cycles: more of them (70) than the control block has patch slots (64),
# so that without the compaction of reverted patches' records an apply is refused; not
# many more, as each cycle stops 8 threads twice and takes seconds on a loaded machine.
case_cycles() {
	start_victim 8
	local i
	for ((i = 0; i < 70; i++)); do
		ulpctl apply -p "$VPID" "$P/patch-compute.so" >/dev/null || fail "apply $i failed"
		ulpctl revert -p "$VPID" compute-fix >/dev/null || fail "revert $i failed"
	done
	victim_ok
	expect_value compute 20
	# Every line the victim printed shows one of the two versions' results.
	grep tick "$LOG" | grep -v -E 'compute=(20|30) ' | head -1 | grep . >/dev/null && fail "wrong result: $(grep tick "$LOG" | grep -v -E 'compute=(20|30) ' | head -1)"
	grep -c 'compute=30 ' "$LOG" | { read -r n; echo "lines with the patched result: $n"; }
	[ "$(grep -c 'memfd:ulp-patch' "/proc/$VPID/maps")" -eq 0 ] || fail "patch mappings leaked"
}

# start_cons WORKERS [FIFO]: the consistency victim; with FIFO, a thread blocked in blocker()
start_cons() {
	: >"$LOG"   # emptied before: the job truncates it only once it runs
	"$VICTIM_CONS" -n "$1" ${2:+-b "$2"} >"$LOG" 2>&1 &
	VPID=$!
	wait_line '^v1=' 5 || fail "victim did not start"
}

no_mix() {
	local m
	sleep 0.05
	m=$(field mixed "$(last_tick)")
	[ "$m" = 0 ] || fail "mixed calls: $m"
}

case_consistency_blocked() {
	mkfifo "$WORK/fifo"
	start_cons 8 "$WORK/fifo"
	wait_line 'blocked=1' 5 || fail "blocker not blocked"
	local apid rc
	# the reversal after the timeout gets as long again: enough for the workers on a
	# loaded machine, so that the one straggler left is the blocked thread
	ulpctl apply --timeout $((3 * SLOW)) -p "$VPID" "$PATCH_CONS" 2>"$WORK/err" &
	apid=$!
	# The others switch while the blocked thread holds out: new code runs during the apply.
	rises v2 3 || fail "no thread switched while the apply waited"
	kill -0 "$apid" 2>/dev/null || fail "apply did not wait for the blocked thread"
	wait "$apid"; rc=$?
	[ "$rc" -eq 3 ] || fail "apply exit $rc, expected 3: $(cat "$WORK/err")"
	grep -q 'blocker' "$WORK/err" || fail "straggler not named: $(cat "$WORK/err")"
	cat "$WORK/err"
	victim_ok
	# Reversed: only the old version runs now.
	local a b
	wait_line '^v1=' 2 "$(lines)"  # a line printed after the operation ended
	a=$(field v2 "$(last_tick)"); sleep 0.3; b=$(field v2 "$(last_tick)")
	[ "$a" = "$b" ] || fail "new code still runs after the reversal ($a -> $b)"
	rises v1 2 || fail "old code does not run after the reversal"
	no_mix
	# Again, and release the blocked thread while the apply waits.
	ulpctl apply --timeout $((30 * SLOW)) -p "$VPID" "$PATCH_CONS" >"$WORK/out" 2>&1 &
	apid=$!
	rises v2 3 || fail "no thread switched in the second apply"
	kill -0 "$apid" 2>/dev/null || fail "second apply finished with the thread still blocked"
	echo x >"$WORK/fifo"
	wait "$apid" || fail "apply after release failed: $(cat "$WORK/out")"
	wait_line '^v1=' 2 "$(lines)"  # a line printed after the operation ended
	a=$(field v1 "$(last_tick)"); sleep 0.3; b=$(field v1 "$(last_tick)")
	[ "$a" = "$b" ] || fail "old code still runs after completion ($a -> $b)"
	ulpctl revert -p "$VPID" consistency || fail "revert failed"
	rises v1 2 || fail "old code does not run after revert"
	wait_line '^v1=' 2 "$(lines)"  # a line printed after the operation ended
	a=$(field v2 "$(last_tick)"); sleep 0.3; b=$(field v2 "$(last_tick)")
	[ "$a" = "$b" ] || fail "new code still runs after revert"
	no_mix
	victim_ok
}

case_consistency_cycles() {
	start_cons 8
	local i n=${CYCLES:-1000} t0 t1
	t0=$(date +%s%N)
	for ((i = 0; i < n; i++)); do
		ulpctl apply -p "$VPID" "$PATCH_CONS" >/dev/null || fail "apply $i failed"
		ulpctl revert -p "$VPID" consistency >/dev/null || fail "revert $i failed"
	done
	t1=$(date +%s%N)
	echo "$n cycles in $(( (t1 - t0) / 1000000 )) ms"
	victim_ok
	no_mix
	echo "final: $(last_tick)"
	[ "$(field v2 "$(last_tick)")" -gt 0 ] || fail "new code never ran"
}

case_global() {
	start_victim 4
	ulpctl apply --global -p "$VPID" "$P/patch-compute.so" || fail "global apply failed"
	expect_value compute 30
	ulpctl revert --global -p "$VPID" compute-fix || fail "global revert failed"
	expect_value compute 20
	kill -9 "$VPID"; wait "$VPID" 2>/dev/null
	mkfifo "$WORK/fifo"
	start_cons 2 "$WORK/fifo"
	wait_line 'blocked=1' 5 || fail "blocker not blocked"
	local rc
	ulpctl apply --global --timeout $((2 * SLOW)) -p "$VPID" "$PATCH_CONS" 2>"$WORK/err"; rc=$?
	[ "$rc" -eq 3 ] || fail "global apply with a blocked thread: exit $rc, expected 3"
	grep -q blocker "$WORK/err" || fail "straggler not named: $(cat "$WORK/err")"
	[ "$(field v2 "$(last_tick)")" = 0 ] || fail "global mode ran new code without switching all threads"
	no_mix
	victim_ok
}

case_info_check() {
	local out
	out=$("$ULPCTL" info "$P/patch-ref.so") || fail "info failed"
	grep -q '^name: *ref-fix' <<<"$out" || fail "info: no name: $out"
	grep -q 'function: *(main):ref_value -> ref_value_v2' <<<"$out" || fail "info: no function: $out"
	grep -q 'reference: *(main):secret' <<<"$out" || fail "info: no reference: $out"
	out=$("$ULPCTL" info --json "$P/patch-ref.so") || fail "info --json failed"
	[ "$(echo "$out" | json_get 'd["functions"][0]["symbol"]')" = ref_value ] || fail "info json: $out"
	printf 'nope' >"$WORK/x.so"
	expect_refusal "info of no ELF" '^ulpctl: .*x\.so:? (is )?not an ELF file$' "$ULPCTL" info "$WORK/x.so"
	expect_refusal "info of no patch" '^ulpctl: .*patch-nometa\.so:? (has )?no ulp patch metadata' "$ULPCTL" info "$P/patch-nometa.so"

	mkfifo "$WORK/fifo"
	start_cons 2 "$WORK/fifo"
	wait_line 'blocked=1' 5 || fail "blocker not blocked"
	# check: the blocked thread would hold the transition up; nothing is written.
	out=$(ulpctl check -p "$VPID" "$PATCH_CONS" 2>&1) && fail "check did not report the blocker: $out"
	grep -q 'blocker' <<<"$out" || fail "check does not name the blocker: $out"
	no_ulp_mappings
	# from here on: the victim's first lines, before its blocker ran, said blocked=0 too
	local from
	from=$(lines)
	echo x >"$WORK/fifo"
	wait_line 'blocked=0' 5 "$from" || fail "blocker not released"
	local i ok=0
	# The workers are inside outer() half of the time: a check sees all outside at some point.
	for ((i = 0; i < 50; i++)); do
		if out=$(ulpctl check -p "$VPID" "$PATCH_CONS" 2>&1); then ok=1; break; fi
	done
	[ "$ok" = 1 ] || fail "check never said it would apply: $out"
	echo "$out"
	no_ulp_mappings
	[ "$(field v2 "$(last_tick)")" = 0 ] || fail "check ran new code"
	victim_ok
}

# A process that exits while ulpctl works on it: one clear line, no hang, no crash.
case_exit_during() {
	local i rc out
	for ((i = 0; i < 20; i++)); do
		"$VICTIM" 8 >/dev/null 2>&1 &
		VPID=$!
		sleep 0.0$((RANDOM % 5 + 1))
		( sleep 0.00$((RANDOM % 9 + 1)); kill -9 "$VPID" ) &
		out=$(timeout $((20 * SLOW)) "$ULPCTL" --direct apply -p "$VPID" "$P/patch-compute.so" 2>&1); rc=$?
		wait "$VPID" 2>/dev/null
		case $rc in
		0) ;;
		1) [ "$(grep -vc '^warning:' <<<"$out")" -eq 1 ] || fail "not one line: $out" ;;
		*) fail "exit $rc when the process died: $out" ;;
		esac
	done
	VPID=
}

# The relocated originals, run for seconds by a thread held in the old state.
case_trampoline() {
	mkfifo "$WORK/fifo"
	: >"$LOG"   # emptied before: the job truncates it only once it runs
	"$VICTIM_ASM" 4 "$WORK/fifo" >"$LOG" 2>&1 &
	VPID=$!
	wait_line 'held=1' 5 || fail "victim did not start"
	refused "back-jump into the entry" \
		'^ulpctl: cannot redirect a_backjump: branch at \+0x[0-9a-f]+ into the displaced bytes \(\+0x[0-9a-f]+\)$' ulpctl apply -p "$VPID" "$P/patch-asm-bad.so"
	no_ulp_mappings
	refused "a data label named as a function" \
		"^ulpctl: cannot redirect a_data_label: its 24 bytes at 0x[0-9a-f]+ are not in executable memory of process $VPID \\(not code\\); nothing written\$" \
		ulpctl apply -p "$VPID" "$P/patch-asm-data.so"
	no_ulp_mappings
	refused "two entry points 3 bytes apart in one patch" \
		'^ulpctl: the entry jumps of a_outer2 and a_inner_entry would overlap \(bytes 0x[0-9a-f]+-0x[0-9a-f]+ and 0x[0-9a-f]+-0x[0-9a-f]+\): one starts inside the other.s first instructions; nothing written$' \
		ulpctl apply -p "$VPID" "$P/patch-asm-overlap.so"
	no_ulp_mappings
	ulpctl apply -p "$VPID" "$P/patch-asm-outer.so" >/dev/null 2>&1 || fail "a_outer2 alone was not applied"
	refused "an entry point inside a patched function's first instructions" \
		'^ulpctl: the entry jump of a_inner_entry would overlap that of a_outer2, which patch asm-outer replaces \(bytes 0x[0-9a-f]+-0x[0-9a-f]+ and 0x[0-9a-f]+-0x[0-9a-f]+\); nothing written$' \
		ulpctl apply -p "$VPID" "$P/patch-asm-inner.so"
	ulpctl revert -p "$VPID" asm-outer >/dev/null 2>&1 || fail "a_outer2's patch was not reverted"
	local apid a b
	ulpctl apply --timeout $((60 * SLOW)) -p "$VPID" "$P/patch-asm.so" >"$WORK/out" 2>&1 &
	apid=$!
	tick() { grep '^held_calls' "$LOG" | tail -n 1; }
	for ((i = 0; i < 100; i++)); do
		[ "$(field new "$(tick)")" -gt 0 ] && break
		sleep 0.05
	done
	[ "$(field new "$(tick)")" -gt 0 ] || fail "workers never switched"
	a=$(field held_calls "$(tick)")
	sleep 2
	b=$(field held_calls "$(tick)")
	kill -0 "$apid" 2>/dev/null || fail "the apply completed while a thread was held in a patched function"
	[ "$b" -gt "$a" ] || fail "the held thread stopped calling"
	echo "held thread: $((b - a)) calls of relocated originals in 2 s"
	echo x >"$WORK/fifo"
	wait "$apid" || fail "apply failed: $(cat "$WORK/out")"
	ulpctl revert -p "$VPID" asm-fix || fail "revert failed"
	sleep 0.1
	echo "final: $(tick)"
	[ "$(field held_wrong "$(tick)")" = 0 ] || fail "the held thread got wrong results: $(tick)"
	[ "$(field wrong "$(tick)")" = 0 ] || fail "wrong results: $(tick)"
	victim_ok
}

# One driver per transition: a second one is refused while the first lives; once it
# is killed, revert takes the transition over and reverses it.
case_takeover() {
	mkfifo "$WORK/fifo"
	start_cons 8 "$WORK/fifo"
	wait_line 'blocked=1' 5 || fail "blocker not blocked"
	local apid out
	"$ULPCTL" --direct apply --timeout $((60 * SLOW)) -p "$VPID" "$PATCH_CONS" >/dev/null 2>&1 &
	apid=$!
	rises v2 5 || fail "no thread switched"
	out=$(ulpctl revert -p "$VPID" consistency 2>&1) && fail "a second driver was let in: $out"
	grep -q "being driven by process $apid" <<<"$out" || fail "refusal does not name the driver: $out"
	out=$(ulpctl status -p "$VPID")
	grep -q "consistency: transition" <<<"$out" || fail "status: $out"
	kill -9 "$apid"; wait "$apid" 2>/dev/null
	victim_ok
	rises v2 2 || fail "the victim stopped running new code after the driver died"
	ulpctl revert --timeout $((20 * SLOW)) -p "$VPID" consistency 2>&1 &
	local rpid=$!
	sleep 0.5
	echo x >"$WORK/fifo"
	wait "$rpid" || fail "revert after the driver died failed"
	local a b
	wait_line '^v1=' 2 "$(lines)"  # a line printed after the operation ended
	a=$(field v2 "$(last_tick)"); sleep 0.3; b=$(field v2 "$(last_tick)")
	[ "$a" = "$b" ] || fail "new code still runs after the reversal"
	rises v1 2 || fail "old code does not run"
	no_mix
	no_ulp_patch() { ! grep -q 'memfd:ulp-patch' "/proc/$VPID/maps" || fail "patch still mapped"; }
	no_ulp_patch
	victim_ok
}

# Someone else rewrites a patched entry: revert refuses and writes nothing.
case_foreign_write() {
	start_victim 4
	ulpctl apply -p "$VPID" "$P/patch-compute.so" || fail "apply failed"
	expect_value compute 30
	local addr vaddr
	addr=$(ulpctl status --json -p "$VPID" | json_get 'd["processes"][0]["patches"][0]["functions"][0]["addr"]')
	vaddr=$(nm "$VICTIM" | awk '$3 == "compute" { print $1 }')
	# Another tool puts the original instructions back (PIE text: file offset == vaddr).
	python3 - "$VPID" "$addr" "$VICTIM" "$vaddr" <<'PY'
import sys
pid, addr, exe, vaddr = int(sys.argv[1]), int(sys.argv[2], 16), sys.argv[3], int(sys.argv[4], 16)
with open(exe, 'rb') as f:
    f.seek(vaddr)
    orig = f.read(16)
with open(f'/proc/{pid}/mem', 'r+b', buffering=0) as m:
    m.seek(addr)
    m.write(orig)
PY
	expect_value compute 20
	refused "entry changed by someone else" \
		'^ulpctl: the code of a patched function was changed by someone else: the entry of compute holds [0-9a-f ]+; nothing written$' ulpctl revert -p "$VPID" compute-fix
	expect_value compute 20
	victim_ok
}

# craft SRC DST KIND: a copy of patch SRC with one field of its ELF broken.
craft() {
	python3 - "$@" <<'PY'
import struct, sys
src, dst, kind = sys.argv[1:4]
b = bytearray(open(src, 'rb').read())
phoff, shoff = struct.unpack_from('<QQ', b, 0x20)
phnum, shnum, shstrndx = struct.unpack_from('<HxxHH', b, 0x38)
ph = [phoff + i * 56 for i in range(phnum)]
loads = [o for o in ph if struct.unpack_from('<I', b, o)[0] == 1]
def flags(o): return struct.unpack_from('<I', b, o + 4)[0]
if kind == 'reloc-outside':
    # The first relocation now writes into the patch's code, not its data.
    code = [o for o in loads if flags(o) & 1][0]
    text = struct.unpack_from('<Q', b, code + 16)[0]
    for i in range(shnum):
        sh = shoff + i * 64
        if struct.unpack_from('<I', b, sh + 4)[0] == 4:          # SHT_RELA
            off = struct.unpack_from('<Q', b, sh + 24)[0]
            struct.pack_into('<Q', b, off, text)
            break
elif kind == 'filesz':
    rw = [o for o in loads if flags(o) & 2][0]
    memsz = struct.unpack_from('<Q', b, rw + 40)[0]
    struct.pack_into('<Q', b, rw + 32, memsz + 0x100)
elif kind == 'overlap':
    code = [o for o in loads if flags(o) & 1][0]
    struct.pack_into('<Q', b, code + 16, 0)
    struct.pack_into('<Q', b, code + 24, 0)
elif kind in ('funcsize', 'dynfuncsize'):
    # The first defined function of .symtab (.dynsym) claims 2^55 bytes more (one bit
    # flipped): the symbol table that names the new function first must not vouch for
    # a size the other one does not give.
    table = 2 if kind == 'funcsize' else 11                      # SHT_SYMTAB, SHT_DYNSYM
    for i in range(shnum):
        sh = shoff + i * 64
        if struct.unpack_from('<I', b, sh + 4)[0] == table:
            off, size = struct.unpack_from('<QQ', b, sh + 24)
            for s in range(off, off + size, 24):
                info, shndx = b[s + 4], struct.unpack_from('<H', b, s + 6)[0]
                if info & 0xf == 2 and shndx != 0:                  # STT_FUNC, defined
                    b[s + 22] |= 0x80
                    print('0x%x' % struct.unpack_from('<Q', b, s + 8)[0])
                    break
            break
open(dst, 'wb').write(b)
PY
}

# refused_all FILE MESSAGE: info, check and apply all refuse FILE, with MESSAGE (apply
# and check word for word the same), and the victim is untouched.
refused_all() {
	local file=$1 msg=$2 out rc
	out=$("$ULPCTL" info "$file" 2>&1); rc=$?
	[ "$rc" -eq 1 ] || fail "info $file: exit $rc ($out)"
	[ "$(echo "$out" | wc -l)" -eq 1 ] && [[ $out == *"$msg"* ]] || fail "info $file: '$out', expected '$msg'"
	out=$(ulpctl check -p "$VPID" "$file" 2>&1); rc=$?
	[ "$rc" -eq 1 ] || fail "check $file: exit $rc ($out)"
	[[ $out == "ulpctl: $msg"* ]] && [ "$(echo "$out" | wc -l)" -eq 1 ] || fail "check $file: '$out', expected 'ulpctl: $msg'"
	local checked=$out
	out=$(ulpctl apply -p "$VPID" "$file" 2>&1); rc=$?
	[ "$rc" -eq 1 ] || fail "apply $file: exit $rc ($out)"
	[ "$out" = "$checked" ] || fail "apply $file: '$out', check said '$checked'"
	echo "refused: $out"
	no_ulp_mappings
	victim_ok
}

# The hot small function: 16 threads call a 14-byte function in a tight loop, so that
# threads sit strictly inside the bytes the entry jump displaces. Such a thread is
# moved to the same instruction of the relocated copy: every apply and revert
# succeeds, and the victim sees each. HOT_CYCLES=N for a longer run by hand.
case_hot() {
	: >"$LOG"   # emptied before: the job truncates it only once it runs
	"$VICTIM_HOT" 16 >"$LOG" 2>&1 &
	VPID=$!
	wait_line '^v1=' 5 || fail "victim did not start"
	# KEY no longer changes: a line printed after now, then three more.
	stays() {
		local a b from
		from=$(lines)
		wait_line '^v1=' 2 "$from" || fail "victim stopped printing"
		a=$(field "$1" "$(last_tick)")
		wait_line '^v1=' 2 "$((from + 3))" || fail "victim stopped printing"
		b=$(field "$1" "$(last_tick)")
		[ "$a" = "$b" ] || fail "$2 ($1 $a -> $b)"
	}
	local i out n=${HOT_CYCLES:-5}
	for ((i = 1; i <= n; i++)); do
		out=$(ulpctl apply --timeout $((10 * SLOW)) -p "$VPID" "$P/patch-hot.so" 2>&1) ||
			fail "apply $i failed: $out"
		grep -q 'keep running inside the code' <<<"$out" && fail "apply $i: $out"
		rises v2 2 || fail "apply $i: the patch's version does not run"
		stays v1 "apply $i: the original still runs after completion"
		out=$(ulpctl revert --timeout $((10 * SLOW)) -p "$VPID" hot-fix 2>&1) ||
			fail "revert $i failed: $out"
		grep -q 'keep running inside the code' <<<"$out" && fail "revert $i: $out"
		rises v1 2 || fail "revert $i: the original does not run"
		stays v2 "revert $i: the patch's version still runs after the revert"
	done
	[ "$(field wrong "$(last_tick)")" = 0 ] || fail "wrong results: $(last_tick)"
	echo "$n applies and reverts: $(last_tick)"
	victim_alive
	! grep -q 'memfd:ulp-patch' "/proc/$VPID/maps" || fail "patch still mapped"
}

case_patch_files() {
	local out
	start_victim 4
	# Packed relative relocations are applied (tests/reach: a patch reading its pointers).
	"$ULPCTL" info "$P/patch-compute-relr.so" | grep '^relr: .* packed relative relocations' >/dev/null || fail "RELR not in info"
	refused_all "$P/patch-badname.so" "bad patch patch-badname.so: ulp_info[0]: name has a non-printable byte 0x0a"
	refused_all "$P/patch-longname65.so" "bad patch patch-longname65.so: the patch name is 65 bytes long, at most 64 are allowed"
	craft "$P/patch-compute.so" "$WORK/outside.so" reloc-outside
	refused_all "$WORK/outside.so" "bad patch outside.so: relocation 0 writes at 0x1000, outside the patch's writable segments"
	craft "$P/patch-compute.so" "$WORK/filesz.so" filesz
	refused_all "$WORK/filesz.so" "bad patch filesz.so: segment 3 is larger in the file ("
	craft "$P/patch-compute.so" "$WORK/overlap.so" overlap
	refused_all "$WORK/overlap.so" "bad patch overlap.so: segment 1 overlaps the one before it or is out of order"
	# A function symbol's size is the range the stack check gives the new function.
	addr=$(craft "$P/patch-compute.so" "$WORK/funcsize.so" funcsize)
	refused_all "$WORK/funcsize.so" "bad patch funcsize.so: function symbol at $addr: its "
	addr=$(craft "$P/patch-compute.so" "$WORK/dynfuncsize.so" dynfuncsize)
	[ -n "$addr" ] || fail "patch-compute.so exports no function in .dynsym"
	refused_all "$WORK/dynfuncsize.so" "bad patch dynfuncsize.so: function symbol at $addr: its "
	expect_value compute 20
	# Stripped (as packaging does), its static slot has no symbol left: still accepted.
	strip --strip-unneeded -o "$WORK/stripped.so" "$P/patch-ref.so" || fail "strip failed"
	out=$("$ULPCTL" info "$WORK/stripped.so" 2>&1) || fail "a stripped patch is refused: $out"

	# 64 bytes: kept whole in the control block and status, reverted by its exact name only.
	local long=compute-fix-with-a-name-of-exactly-sixty-four-bytes-0123456789ab
	ulpctl apply -p "$VPID" "$P/patch-longname64.so" || fail "apply of a 64-byte name failed"
	expect_value compute 30
	out=$(ulpctl status -p "$VPID" --json) || fail "status failed"
	[ "$(echo "$out" | json_get 'd["processes"][0]["patches"][0]["name"]')" = "$long" ] || fail "name not whole: $out"
	out=$(ulpctl revert -p "$VPID" "${long%?}" 2>&1) && fail "revert by a prefix of the name worked: $out"
	ulpctl revert -p "$VPID" "$long" || fail "revert by the exact name failed"
	expect_value compute 20
	! grep -q 'memfd:ulp-patch:' "/proc/$VPID/maps" || fail "the patch is still mapped after its revert"
	victim_ok
}

"case_${CASE//-/_}"
echo "PASS: $CASE"
