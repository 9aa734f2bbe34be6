#!/usr/bin/env bash
# Symbols tests (docs/symbols.md): real victims patched with ulpctl --direct, each case
# checking what the victim itself prints.
# Usage: run.sh CASE   (env from meson: ULPCTL, VICTIM_SYM, PATCHDIR)
set -uo pipefail

CASE=$1
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=
CLEANUP_FILES=()
# debug files a case installed outside WORK (lib.sh calls on_exit at exit)
on_exit() {
	local f
	for f in "${CLEANUP_FILES[@]}"; do rm -f "$f"; rmdir --ignore-fail-on-non-empty "$(dirname "$f")"; done
}

ulpctl() { "$ULPCTL" --direct "$@"; }

P=$PATCHDIR

# start_victim CMD...: runs it, waits for its first tick.
start_victim() {
	: >"$LOG"   # emptied before: the job truncates it only once it runs
	"$@" >"$LOG" 2>&1 &
	VPID=$!
	wait_line 'tick' 5 || fail "victim did not start"
}

victim_alive() {
	kill -0 "$VPID" 2>/dev/null || fail "victim died"
	grep -q TracerPid:.0 "/proc/$VPID/status" || fail "victim left traced"
}

build_id() { readelf -n "$1" | awk '/Build ID:/ { print $3; exit }'; }

# A copy of the victim with a random build-id of its own (so that no other run's debug
# file can be taken for it), its debug file split off and its .symtab stripped.
make_stripped() {
	local bid new
	cp "$VICTIM_SYM" "$WORK/victim" || fail "copy"
	bid=$(build_id "$WORK/victim")
	[ -n "$bid" ] || fail "the victim has no build-id (it is linked with one)"
	new=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
	python3 - "$WORK/victim" "$bid" "$new" <<'PY' || fail "cannot give the victim a build-id of its own"
import sys
p, old, new = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
b = open(p, 'rb').read()
assert b.count(old) == 1
open(p, 'wb').write(b.replace(old, new))
PY
	objcopy --only-keep-debug "$WORK/victim" "$WORK/victim.debug" || fail "objcopy --only-keep-debug"
	strip --strip-all "$WORK/victim" || fail "strip"
	! readelf -S "$WORK/victim" | grep '\.symtab' >/dev/null || fail "the stripped victim still has .symtab"
	BID=$(build_id "$WORK/victim")
	[ "$BID" = "$new" ] || fail "build-id $BID, expected $new"
}

# apply_revert_price: patch price (a static function) and revert it, as the victim sees.
apply_revert_price() {
	local out
	expect_value price 20
	out=$(ulpctl apply -p "$VPID" "$P/patch-price.so" 2>&1) || fail "apply failed: $out"
	echo "$out"
	victim_alive
	expect_value price 1010
	ulpctl revert -p "$VPID" price-fix || fail "revert failed"
	expect_value price 20
	victim_alive
	LAST_APPLY=$out
}

case_stripped() {
	make_stripped
	local root=$WORK/debug hex=$BID
	export ULP_DEBUG_ROOT=$root
	start_victim "$WORK/victim" static 4

	# No debug file: refused, naming the file and what was looked for.
	expect_refusal "no debug file" \
		"^ulpctl: function price not found in the main executable \\($WORK/victim, stripped: no $root/\\.build-id/${hex:0:2}/${hex:2}\\.debug\\)\$" \
		ulpctl apply -p "$VPID" "$P/patch-price.so"
	victim_alive

	# A debug file of another build under the build-id path: not used, and said so.
	mkdir -p "$root/.build-id/${hex:0:2}"
	objcopy --only-keep-debug "$VICTIM_SYM" "$root/.build-id/${hex:0:2}/${hex:2}.debug"
	expect_refusal "foreign debug file" \
		"^ulpctl: function price not found in the main executable \\($WORK/victim, stripped: $root/\\.build-id/${hex:0:2}/${hex:2}\\.debug has build-id [0-9a-f]{40}, not $hex\\)\$" \
		ulpctl apply -p "$VPID" "$P/patch-price.so"

	# Its own debug file, by build-id: patched and reverted, and check says where from.
	cp "$WORK/victim.debug" "$root/.build-id/${hex:0:2}/${hex:2}.debug"
	local chk
	chk=$(ulpctl check -p "$VPID" "$P/patch-price.so" 2>&1) || fail "check failed: $chk"
	grep -q -F "warning: price: symbol from the debug file $root/.build-id/${hex:0:2}/${hex:2}.debug of $WORK/victim (build-id checked)" <<<"$chk" ||
		fail "check does not say where price came from: $chk"
	apply_revert_price
	grep -q -F "symbol from the debug file $root/.build-id/" <<<"$LAST_APPLY" || fail "apply does not say where price came from"
	expect_refusal "in neither file" \
		"^ulpctl: function no_such_function not found in the main executable \\($WORK/victim, and its debug file $root/\\.build-id/${hex:0:2}/${hex:2}\\.debug\\)\$" \
		ulpctl apply -p "$VPID" "$P/patch-nosuch.so"
	expect_refusal "ULP_REF in neither file" \
		"^ulpctl: ULP_REF symbol no_such_variable not found in the main executable \\($WORK/victim, and its debug file $root/\\.build-id/${hex:0:2}/${hex:2}\\.debug\\)\$" \
		ulpctl apply -p "$VPID" "$P/patch-refnosuch.so"
	kill -9 "$VPID"; wait "$VPID" 2>/dev/null; VPID=

	# By .gnu_debuglink, next to the binary, with no build-id file.
	rm -rf "$root"
	objcopy --add-gnu-debuglink="$WORK/victim.debug" "$WORK/victim" || fail "objcopy --add-gnu-debuglink"
	start_victim "$WORK/victim" static 4
	# A symbolic link in its place is not followed: the directory is the process's
	# user's, who may point one at any file, and ulp may look as root.
	mv "$WORK/victim.debug" "$WORK/real.debug" && ln -s real.debug "$WORK/victim.debug" || fail "symlink"
	expect_refusal "debug link through a symbolic link" \
		"^ulpctl: function price not found in the main executable \\($WORK/victim, stripped: no $root/\\.build-id/${hex:0:2}/${hex:2}\\.debug; $WORK/victim\\.debug goes through a symbolic link, not followed; no $WORK/\\.debug/victim\\.debug; no $root$WORK/victim\\.debug\\)\$" \
		ulpctl apply -p "$VPID" "$P/patch-price.so"
	victim_alive
	rm "$WORK/victim.debug" && mv "$WORK/real.debug" "$WORK/victim.debug" || fail "no symlink"
	apply_revert_price
	grep -q -F "symbol from the debug file $WORK/victim.debug of $WORK/victim" <<<"$LAST_APPLY" ||
		fail "apply does not say price came from $WORK/victim.debug: $LAST_APPLY"
}

# The default root, /usr/lib/debug/.build-id, as distributions install -dbgsym packages:
# as root only, the file removed afterwards (its build-id is this run's own).
case_stripped_system() {
	[ "$(id -u)" -eq 0 ] || skip "installing into /usr/lib/debug needs root"
	make_stripped
	unset ULP_DEBUG_ROOT
	local dir=/usr/lib/debug/.build-id/${BID:0:2}
	local dbg=$dir/${BID:2}.debug
	mkdir -p "$dir" || fail "mkdir $dir"
	CLEANUP_FILES+=("$dbg")
	cp "$WORK/victim.debug" "$dbg" || fail "cp $dbg"
	start_victim "$WORK/victim" static 4
	apply_revert_price
	grep -q -F "symbol from the debug file $dbg of $WORK/victim" <<<"$LAST_APPLY" || fail "apply does not name $dbg"
}

json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# Eight threads calling clock_gettime in a loop, stopped in the vDSO most of the time
# they run:
# their stacks unwind through the vDSO's own CFI, so the first pass switches them all.
case_vdso() {
	start_victim "$VICTIM_SYM" vdso 8
	expect_value price 20
	local out ms retries
	out=$(ulpctl apply --json -p "$VPID" "$P/patch-price.so") || fail "apply failed: $out"
	ms=$(echo "$out" | json_get 'd["total_ms"]')
	retries=$(echo "$out" | json_get 'd["retries"]')
	echo "apply with 8 threads in clock_gettime: ${ms} ms, $retries retries (load $(cut -d' ' -f1 /proc/loadavg))"
	[ "$retries" -eq 0 ] || fail "$retries retries: threads in the vDSO were judged unreliable ($out)"
	[ "$ms" -lt $((1000 * SLOW)) ] || fail "apply took $ms ms"
	expect_value price 1010
	out=$(ulpctl revert --json -p "$VPID" price-fix) || fail "revert failed: $out"
	[ "$(echo "$out" | json_get 'd["retries"]')" -eq 0 ] || fail "revert retried: $out"
	expect_value price 20
	victim_alive
}

# As a user without CAP_CHECKPOINT_RESTORE, /proc/PID/map_files is closed: a thread that
# sits in the code of an earlier patch (hold-forever makes one block in its hold_v2)
# unwinds through that patch's image read from the victim's memory, and a second
# patch's transition completes at once.
case_nonroot_earlier_patch() {
	[ "$(id -u)" -eq 0 ] || skip "switching to an unprivileged user needs root"
	local as="setpriv --reuid=65534 --regid=65534 --clear-groups" out ms
	chmod 755 "$WORK"
	cp "$VICTIM_SYM" "$P/patch-hold.so" "$P/patch-price.so" "$WORK/" || fail "copy"
	touch "$LOG" && chmod 666 "$LOG"
	start_victim $as "$WORK/symbols-victim" hold 2
	expect_value price 20
	$as "$ULPCTL" --direct apply -p "$VPID" "$WORK/patch-hold.so" || fail "apply of hold-forever failed"
	# Wait for the holder thread to block in the patch (pause(), in hold_v2).
	local end
	end=$(deadline 5)
	until cat /proc/"$VPID"/task/*/wchan 2>/dev/null | grep pause >/dev/null; do
		before "$end" || fail "the holder thread never blocked in hold-forever's code"
		sleep 0.01
	done
	out=$($as "$ULPCTL" --direct apply --json --timeout $((5000 * SLOW)) -p "$VPID" "$WORK/patch-price.so") ||
		fail "second patch refused while a thread sits in the first one's code: $out"
	ms=$(echo "$out" | json_get 'd["total_ms"]')
	echo "second patch, a thread blocked in the first one's code: $ms ms, $(echo "$out" | json_get 'd["retries"]') retries"
	expect_value price 1010
	$as "$ULPCTL" --direct revert -p "$VPID" price-fix || fail "revert failed"
	expect_value price 20
	victim_alive
}

# A ULP_REF to a symbol the object does not have: refused, naming the file searched.
case_ref_not_found() {
	start_victim "$VICTIM_SYM" static 2
	expect_refusal "ULP_REF not found" \
		"^ulpctl: ULP_REF symbol no_such_variable not found in the main executable \\($VICTIM_SYM\\)\$" \
		ulpctl apply -p "$VPID" "$P/patch-refnosuch.so"
	! grep -q 'memfd:ulp-patch' "/proc/$VPID/maps" || fail "the refused patch was mapped"
	expect_value price 20
}

# A process with fibers (makecontext/swapcontext): refused before anything is written;
# with --force patched (its parked fiber stacks unchecked); its revert refused the same
# way, and done with --force.
case_fibers() {
	start_victim "$VICTIM_FIBER"
	expect_value value 13
	expect_refusal "fibers" \
		"^ulpctl: process $VPID runs stackful user-level threads \\($VICTIM_FIBER imports (makecontext|swapcontext)\\): the stacks of parked fibers are invisible to the stack check; --force patches without checking them \\(docs/symbols\\.md\\)\$" \
		ulpctl apply -p "$VPID" "$P/patch-fiber.so"
	victim_alive
	! grep -q 'memfd:ulp-patch' "/proc/$VPID/maps" || fail "the refused patch was mapped"
	local out
	out=$(ulpctl apply --force --timeout $((1000 * SLOW)) -p "$VPID" "$P/patch-fiber.so" 2>&1) || fail "forced apply failed: $out"
	grep -q "^warning: process $VPID runs stackful user-level threads .*: the stacks of parked fibers are not checked (--force)\$" <<<"$out" ||
		fail "no warning about the fibers: $out"
	expect_value value 510
	# A revert switches threads just as an apply does: refused the same way.
	expect_refusal "fibers, revert" \
		"^ulpctl: process $VPID runs stackful user-level threads \\($VICTIM_FIBER imports (makecontext|swapcontext)\\): the stacks of parked fibers are invisible to the stack check; --force reverts without checking them \\(docs/symbols\\.md\\)\$" \
		ulpctl revert -p "$VPID" fiber-fix
	expect_value value 510
	out=$(ulpctl revert --force --timeout $((1000 * SLOW)) -p "$VPID" fiber-fix 2>&1) || fail "forced revert failed: $out"
	grep -q "^warning: process $VPID runs stackful user-level threads .*: the stacks of parked fibers are not checked (--force)\$" <<<"$out" ||
		fail "no warning about the fibers on revert: $out"
	expect_value value 13
	victim_alive
}

# fiber_refused WHY: apply and check refuse the victim, whose stackful threads WHY
# (a regex) describes, before anything is written; the victim goes on unchanged.
fiber_refused() {
	local re="^ulpctl: process $VPID runs stackful user-level threads \\($1\\): the stacks of parked fibers are invisible to the stack check; --force patches without checking them \\(docs/symbols\\.md\\)\$"
	expect_refusal "apply" "$re" ulpctl apply -p "$VPID" "$P/patch-fiber.so"
	expect_refusal "check" "$re" ulpctl check -p "$VPID" "$P/patch-fiber.so"
	! grep -q 'memfd:ulp' "/proc/$VPID/maps" || fail "ulp mappings in the victim"
	victim_alive
	expect_value value 13
}

# A fiber library: fibers of Boost.Context (make_fcontext/jump_fcontext) in a victim that
# loaded libboost_context with dlopen; found by the library's soname.
case_fiber_library() {
	local lib soname
	lib=$(ldconfig -p | awk '/libboost_context\.so\./ && /x86-64/ { print $NF; exit }')
	[ -n "$lib" ] || fail "libboost_context is not installed (scripts/setup-deps.sh installs libboost-context1.74.0)"
	soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]$/\1/p')
	[ -n "$soname" ] || fail "$lib has no soname"
	start_victim "$VICTIM_FCONTEXT" "$lib"
	expect_value value 13
	grep -q "$(readlink -f "$lib")" "/proc/$VPID/maps" || fail "the victim did not load $lib"
	fiber_refused "${soname//./\\.} is a fiber library"
}

# Go programs, by stand-ins made as the Go linker makes them (victim-go.c): a stripped
# binary that keeps its .go.buildinfo section, and one with the runtime.goexit symbol.
case_go() {
	cp "$VICTIM_GO_BUILDINFO" "$WORK/go-buildinfo" || fail "copy"
	strip --strip-all "$WORK/go-buildinfo" || fail "strip"
	readelf -SW "$WORK/go-buildinfo" | grep ' \.go\.buildinfo ' >/dev/null || fail "no .go.buildinfo section"
	! readelf -SW "$WORK/go-buildinfo" | grep '\.symtab' >/dev/null || fail "the stripped stand-in has .symtab"
	readelf -x .go.buildinfo "$WORK/go-buildinfo" | grep 'Go buildinf:' >/dev/null || fail "no buildinfo magic"
	start_victim "$WORK/go-buildinfo"
	expect_value value 13
	fiber_refused "${WORK//./\\.}/go-buildinfo is a Go program"
	kill -9 "$VPID"; wait "$VPID" 2>/dev/null; VPID=

	! readelf -SW "$VICTIM_GO_SYMBOL" | grep '\.go\.buildinfo' >/dev/null || fail "the symbol stand-in has .go.buildinfo"
	nm "$VICTIM_GO_SYMBOL" | grep ' T runtime\.goexit$' >/dev/null || fail "no runtime.goexit symbol"
	start_victim "$VICTIM_GO_SYMBOL"
	expect_value value 13
	fiber_refused "${VICTIM_GO_SYMBOL//./\\.} is a Go program"
}

# A C++ victim, shop::Cart::total(int) const, patched by a C++ patch that uses the
# standard library, named by its mangled symbol and by its demangled name.
case_cxx() {
	[ -n "$VICTIM_CXX" ] || fail "no C++ compiler: g++ is a dependency (scripts/setup-deps.sh)"
	start_victim "$VICTIM_CXX"
	expect_value total 71
	local v out
	for v in mangled demangled; do
		out=$(ulpctl apply -p "$VPID" "$P/patch-cxx-$v.so" 2>&1) || fail "apply of the $v patch failed: $out"
		expect_value total 405
		ulpctl revert -p "$VPID" "cxx-$v" || fail "revert of cxx-$v failed"
		expect_value total 71
	done
	# A demangled name that matches no function: refused, naming it and the file.
	expect_refusal "no such C++ function" \
		"^ulpctl: function shop::Cart::total\\(long\\) const not found in the main executable \\($VICTIM_CXX\\)\$" \
		ulpctl apply -p "$VPID" "$P/patch-cxx-missing.so"
	victim_alive
}

"case_${CASE//-/_}" || exit 1
victim_alive 2>/dev/null || true
echo "ok $CASE"
