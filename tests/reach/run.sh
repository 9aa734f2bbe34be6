#!/usr/bin/env bash
# Functions of every kind in binaries of every build, patched and reverted for real with
# ulpctl --direct; each case checks what the victim itself prints (docs/reach.md).
# Usage: run.sh CASE   (env: ULPCTL, PATCHDIR, CLANG_FOUND from meson)
set -uo pipefail

CASE=$1
P=$PATCHDIR
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=
LOG=

ulpctl() { "$ULPCTL" --direct "$@"; }

# start_victim VARIANT [THREADS]: a fresh victim of that build, its own log.
start_victim() {
	[ -n "$VPID" ] && { kill -9 "$VPID" 2>/dev/null; wait "$VPID" 2>/dev/null; }
	LOG=$WORK/$1.log
	: >"$LOG"   # emptied before: the job truncates it only once it runs
	"$P/reach-victim-$1" "${2:-4}" >"$LOG" 2>&1 &
	VPID=$!
	wait_line 'tick' 5 || fail "victim $1 did not start"
}

victim_alive() {
	kill -0 "$VPID" 2>/dev/null || fail "victim died"
	grep -q TracerPid:.0 "/proc/$VPID/status" || fail "victim left traced"
}

# apply_revert PATCH NAME KEY OLD NEW: the victim's KEY goes OLD -> NEW -> OLD.
apply_revert() {
	local out
	expect_value "$3" "$4"
	out=$(ulpctl apply -p "$VPID" "$P/$1" 2>&1) || fail "apply $1 failed: $out"
	echo "$out" | tee "$WORK/apply.out"
	expect_value "$3" "$5"
	victim_alive
	out=$(ulpctl revert -p "$VPID" "$2" 2>&1) || fail "revert $2 failed: $out"
	expect_value "$3" "$4"
	victim_alive
}

# refused PATCH MESSAGE: apply refused with exactly that line; nothing changed (no
# patch mapped, and no ulp mapping at all if there was none before).
refused() {
	local out rc before
	before=$(grep -c 'memfd:ulp' "/proc/$VPID/maps")
	out=$(ulpctl apply -p "$VPID" "$P/$1" 2>&1); rc=$?
	[ "$rc" -ne 0 ] || fail "apply $1 was not refused"
	[ "$out" = "ulpctl: $2" ] || fail "apply $1: '$out', expected 'ulpctl: $2'"
	echo "refused: $out"
	! grep -q 'memfd:ulp-patch' "/proc/$VPID/maps" || fail "the refused patch is mapped in the victim"
	[ "$before" -gt 0 ] || ! grep -q 'memfd:ulp' "/proc/$VPID/maps" || fail "ulp mappings left in the victim"
	victim_alive
}

# A 4-byte function (lea; ret) and its padding, 8 threads calling it in a loop.
case_tiny() {
	start_victim gcc-pie 8
	apply_revert reach-patch-tiny.so tiny-fix tiny 11 110
	grep -q -F 'warning: tiny_fn is 4 bytes: its entry jump also covers 1 byte(s) of the padding after it' \
		"$WORK/apply.out" || fail "no word of the padding: $(cat "$WORK/apply.out")"
	# Again: the relocated copy of the first apply is used again.
	apply_revert reach-patch-tiny.so tiny-fix tiny 11 110
	expect_value mid 20
}

# mid_fn of the executable and lib_fn of libreach.so, more than 2 GiB apart, in one
# patch and one transition.
case_far() {
	start_victim gcc-pie 4
	local exe lib
	exe=$(awk '/reach-victim-gcc-pie/ { split($1, a, "-"); print a[1]; exit }' "/proc/$VPID/maps")
	lib=$(awk '/libreach.so/ { split($1, a, "-"); print a[1]; exit }' "/proc/$VPID/maps")
	python3 -c "import sys; sys.exit(0 if abs(0x$exe - 0x$lib) > 2**31 else 1)" ||
		fail "the executable (0x$exe) and libreach.so (0x$lib) are not 2 GiB apart"
	expect_value lib 1010
	expect_value mid 20
	ulpctl apply -p "$VPID" "$P/reach-patch-far.so" || fail "apply failed"
	expect_value mid 2000
	expect_value lib 5010
	ulpctl status -p "$VPID" | grep 'far-fix' >/dev/null || fail "status does not show far-fix"
	ulpctl revert -p "$VPID" far-fix || fail "revert failed"
	expect_value mid 20
	expect_value lib 1010
	# Again, with another patch of mid_fn under it: the stack of the two.
	ulpctl apply -p "$VPID" "$P/reach-patch-relr.so" || fail "apply relr failed"
	expect_value mid 3007
	ulpctl apply -p "$VPID" "$P/reach-patch-far.so" || fail "apply far over relr failed"
	expect_value mid 2000
	expect_value lib 5010
	ulpctl revert -p "$VPID" far-fix || fail "revert far failed"
	expect_value mid 3007
	expect_value lib 1010
	ulpctl revert -p "$VPID" relr-fix || fail "revert relr failed"
	expect_value mid 20
	# Global mode: every thread at once, no dispatch stubs.
	ulpctl apply --global -p "$VPID" "$P/reach-patch-far.so" || fail "global apply failed"
	expect_value mid 2000
	expect_value lib 5010
	ulpctl revert --global -p "$VPID" far-fix || fail "global revert failed"
	expect_value mid 20
	expect_value lib 1010
	victim_alive
}

# A patch linked with -z pack-relative-relocs, reading pointers from its data.
case_relr() {
	local out
	readelf -d "$P/reach-patch-relr.so" | grep '(RELR)' >/dev/null || fail "the patch has no DT_RELR"
	out=$("$ULPCTL" info "$P/reach-patch-relr.so") || fail "info failed"
	grep -E -q '^relr: +[0-9]+ packed relative relocations \(DT_RELR\)$' <<<"$out" || fail "info: $out"
	start_victim gcc-pie 4
	apply_revert reach-patch-relr.so relr-fix mid 20 3007
}

# A patch calling strlen, memcpy and strcmp, IFUNCs of glibc.
case_ifunc() {
	start_victim gcc-pie 4
	apply_revert reach-patch-ifunc.so ifunc-fix word 5 505
}

# IFUNCs of libreach.so that nothing in the process has called through a GOT slot: the
# resolver runs in the victim on a borrowed thread; what it returns must be code of
# libreach.so, and it must return within the callback deadline.
case_ifunc_resolver() {
	local lib out
	start_victim gcc-pie 4
	lib=$(awk '/libreach.so/ { print $6; exit }' "/proc/$VPID/maps")
	[ -n "$lib" ] || fail "libreach.so is not mapped"
	# reach_pick(10) = 11 through the call and through the ULP_REF: 11 + 100 * 11.
	apply_revert reach-patch-pick.so pick-fix mid 20 1111
	refused reach-patch-stray.so "$(printf 'the resolver of IFUNC reach_stray returned %#x, not in the code of %s: not used' \
		"$(( 0x$(awk '/libreach.so/ { split($1, a, "-"); print a[1]; exit }' "/proc/$VPID/maps") + \
		     0x$(nm -D "$lib" | awk '$3 == "lib_bias" { print $1 }') ))" "$lib")"
	# A resolver that takes a second, with a 200 ms deadline: refused; the thread it was
	# given finishes it by itself, and the victim goes on as before.
	out=$(ulpctl apply --callback-timeout 200 -p "$VPID" "$P/reach-patch-slow.so" 2>&1) &&
		fail "the slow resolver's apply was not refused"
	[ "$out" = "ulpctl: the resolver of IFUNC reach_slow in $lib did not return within the callback deadline: it runs on in the thread it was given; nothing changed" ] ||
		fail "slow resolver: '$out'"
	! grep -q 'memfd:ulp-patch' "/proc/$VPID/maps" || fail "the refused patch is still mapped"
	victim_alive
	expect_value mid 20 $((3 + 2))
	# Then, its resolver done, the same patch with the default deadline.
	apply_revert reach-patch-slow.so slow-fix mid 20 11
	apply_revert reach-patch-pick.so pick-fix mid 20 1111
}

# worker_count: the worker's calls in the victim's last tick line.
worker_count() { grep '^tick' "$LOG" | tail -n 1 | sed -n 's/.* worker=\([0-9]*\).*/\1/p'; }
worker_runs() {
	local a
	a=$(worker_count)
	wait_for 5 eval '[ "$(worker_count)" -gt "'"$a"'" ]'
}
# worker_asleep: the count stays the same over three tick lines printed from now on.
worker_asleep() {
	local a from
	a=$(worker_count)
	from=$(lines)
	wait_line 'tick' 5 "$((from + 2))" || fail "victim stopped printing"
	[ "$(worker_count)" = "$a" ]
}

# A thread asleep in a signal handler whose interrupted PC (in the signal frame on its
# stack) is strictly inside small_fn's displaced bytes: the entry write moves that saved
# PC into the relocated copy, so the handler returns there instead of into the middle
# of the new jump. The apply waits for the thread (its stack has a signal frame) until
# the handler returns; the worker then goes on, and is switched.
case_signal_handler() {
	local out apply_pid rc
	LOG=$WORK/signal.log
	: >"$LOG"   # emptied before: the job truncates it only once it runs
	"$P/reach-victim-signal" >"$LOG" 2>&1 &
	VPID=$!
	wait_line '^caught at \+2$' 20 || fail "the worker never took the signal on small_fn's lea"
	expect_value small 21
	worker_asleep || fail "the worker runs: it is not asleep in its handler"
	"$ULPCTL" --direct apply --timeout $((60 * SLOW)) -p "$VPID" "$P/reach-patch-small.so" >"$WORK/apply.out" 2>&1 &
	apply_pid=$!
	PIDS+=("$apply_pid")
	# The entry is written once the main thread calls the new code.
	fail_details() { cat "$WORK/apply.out"; tail -n 3 "$LOG"; }
	expect_value small 1010 20
	kill -USR2 "$VPID"
	wait_line '^handler returned$' 10 || fail "the handler did not return"
	worker_runs || fail "the worker does not run after its handler returned"
	wait "$apply_pid"; rc=$?
	[ "$rc" -eq 0 ] || fail "apply failed ($rc): $(cat "$WORK/apply.out")"
	cat "$WORK/apply.out"
	victim_alive
	out=$(ulpctl revert -p "$VPID" small-fix 2>&1) || fail "revert failed: $out"
	expect_value small 21
	worker_runs || fail "the worker stopped after the revert"
	victim_alive
}

# One build of the victim (gcc-nopie, gcc-static, clang-cet-pie, clang-cet-nopie): the
# tiny, RELR and IFUNC patches applied and reverted.
case_toolchain() {
	local v=$1
	if [[ $v == clang-* ]] && [ "${CLANG_FOUND:-0}" != 1 ]; then
		echo "SKIP: clang not found (scripts/setup-deps.sh installs it): the $v build was not made"
		exit 77
	fi
	if [[ $v == clang-* ]]; then
		objdump -d --no-show-raw-insn "$P/reach-victim-$v" | grep -A1 '<tiny_fn>:' | grep endbr64 >/dev/null ||
			fail "the $v build has no endbr64 at tiny_fn"
	fi
	start_victim "$v" 4
	apply_revert reach-patch-tiny.so tiny-fix tiny 11 110
	apply_revert reach-patch-relr.so relr-fix mid 20 3007
	apply_revert reach-patch-ifunc.so ifunc-fix word 5 505
}

# What stays refused, each with its reason.
case_refusals() {
	start_victim gcc-pie 2
	refused reach-patch-nopad.so "function nopad_fn is too small to patch (1 bytes, a jump needs 5): only 0 byte(s) of padding follow it, then nopad_next"
	refused reach-patch-falls.so "function nopad_next is too small to patch (4 bytes, a jump needs 5): its last instruction is not ret, jmp or ud2, so the bytes after it are not unreachable padding"
	local why="which ulp does not support: its resolver, the patch's own code, would run in the target before the patch is recorded (docs/reach.md)"
	refused reach-patch-self.so "patch reach-patch-self.so defines an IFUNC (IRELATIVE relocation 0), $why"
	refused reach-patch-self-global.so "patch reach-patch-self-global.so defines an IFUNC (self_pick), $why"
	expect_value tiny 11
	expect_value mid 20

	# more ELF objects than ulp reads (each a file read and, in the unwinder, a descriptor
	# held): refused before anything is written
	REACH_MAP_COPIES=5000 start_victim gcc-pie 2
	[ "$(grep -c reach-victim-gcc-pie "/proc/$VPID/maps")" -gt 5000 ] || fail "the victim did not map its copies"
	refused reach-patch-tiny.so "process $VPID has more than 4096 ELF objects mapped, more than ulp reads (docs/limits.md)"
	expect_value tiny 11

	# a memory map of more text than ulp reads: a data file of a 3,000-byte path mapped
	# 30,000 times (90 MB of /proc/PID/maps at every read)
	local dir=$WORK i
	for i in $(seq 14); do dir=$dir/$(printf 'd%.0s' $(seq 200)); done
	mkdir -p "$dir" && head -c 4096 /dev/zero >"$dir/data" || fail "cannot make the long path"
	REACH_MAP_FILE=$dir/data REACH_MAP_COPIES=30000 start_victim gcc-pie 2
	[ "$(wc -c <"/proc/$VPID/maps")" -gt $((64 << 20)) ] || fail "the victim did not map its copies"
	refused reach-patch-tiny.so "cannot read the modules of process $VPID: its memory map (/proc/PID/maps) is larger than ulp reads (32 MiB)"
	expect_value tiny 11

	# a process whose main thread has exited (a zombie) while its other threads run on:
	# named for what it is, not "no process"
	REACH_ZOMBIE_LEADER=1 start_victim gcc-pie 2
	wait_for 5 grep -q '^State:[[:space:]]*Z' "/proc/$VPID/status" || fail "the victim's main thread did not exit"
	refused reach-patch-tiny.so "process $VPID cannot be patched: its main thread has exited while its other threads run on, and ulp reaches a process's memory through its main thread (docs/reach.md)"
	expect_value tiny 11
}

# hold_trace TID: another program (python3) seizes thread TID of the victim and holds it
# until killed; TRACER is its pid.
hold_trace() {
	# emptied before: the job truncates it only once it runs, and an earlier tracer's
	# "seized" let the apply run before this one had seized its thread (a load test)
	: >"$WORK/tracer.out"
	python3 -c '
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(0x4206, int(sys.argv[1]), None, None) != 0:   # PTRACE_SEIZE
    print("seize failed: errno", ctypes.get_errno(), flush=True)
    sys.exit(1)
print("seized", flush=True)
time.sleep(3600)' "$1" >"$WORK/tracer.out" 2>&1 &
	TRACER=$!
	PIDS+=("$TRACER")   # killed first at exit: a traced victim is reaped only after
	wait_for 10 grep -q seized "$WORK/tracer.out" || fail "the tracer did not seize thread $1: $(cat "$WORK/tracer.out")"
	# the kernel's word for it
	grep -E "^TracerPid:[[:space:]]*$TRACER\$" "/proc/$VPID/task/$1/status" >/dev/null ||
		fail "thread $1 is not traced by the tracer $TRACER: $(grep TracerPid "/proc/$VPID/task/$1/status")"
}

end_trace() {
	kill -9 "$TRACER"
	wait "$TRACER" 2>/dev/null
}

# A process one of whose threads another program traces (a debugger): refused with the
# tracer named, before anything is written when it is the main thread; applied once the
# tracer is gone.
case_traced() {
	local why="a debugger or tracer holds it; detach it first" tid out op
	start_victim gcc-pie 2
	hold_trace "$VPID"
	for op in "apply -p $VPID $P/reach-patch-tiny.so" "revert -p $VPID tiny-fix"; do
		# shellcheck disable=SC2086
		out=$(ulpctl $op 2>&1) && fail "$op with a tracer attached succeeded: $out"
		[ "$out" = "ulpctl: cannot stop process $VPID: thread $VPID is traced by another program (pid $TRACER, python3): $why" ] ||
			fail "$op with a tracer attached: '$out'"
		echo "refused: $out"
	done
	! grep -q 'memfd:ulp' "/proc/$VPID/maps" || fail "ulp mappings left in the victim: $(grep memfd:ulp "/proc/$VPID/maps")"
	end_trace
	victim_alive
	expect_value tiny 11

	# a worker thread only: met at its stop, the same words; no patch code left
	tid=$(ls "/proc/$VPID/task" | sort -n | tail -1)
	[ "$tid" != "$VPID" ] || fail "the victim has no second thread"
	hold_trace "$tid"
	out=$(ulpctl apply -p "$VPID" "$P/reach-patch-tiny.so" 2>&1) && fail "apply with a tracer on thread $tid succeeded: $out"
	out=$(grep -v '^warning: tiny_fn is 4 bytes' <<<"$out")
	[ "$out" = "ulpctl: cannot stop process $VPID: thread $tid is traced by another program (pid $TRACER, python3): $why" ] ||
		fail "apply with a tracer on thread $tid: '$out'"
	echo "refused: $out"
	! grep -q 'memfd:ulp-patch' "/proc/$VPID/maps" || fail "the refused patch is mapped in the victim"
	victim_alive
	expect_value tiny 11
	end_trace

	apply_revert reach-patch-tiny.so tiny-fix tiny 11 110
}

"case_${CASE//-/_}" "${@:2}"
