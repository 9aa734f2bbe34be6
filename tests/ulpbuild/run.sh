#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# ulp-build on a real project (shop/, built with its own Makefile) whose program runs
# while the patch is made from a diff and applied (docs/ulp-build.md). Each case checks
# what the running program prints, and the exact refusals.
# Usage: run.sh CASE   (env: ULPCTL, ULP_BUILD from meson)
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case=${1:?usage: run.sh CASE}
ulpctl() { "$ULPCTL" --direct "$@"; }

# The clean tree, and the program as it was built from it and runs.
cp -r "$here/shop" "$WORK/src"
cp -r "$here/shop" "$WORK/run"
make -s -C "$WORK/run" CC=cc >"$WORK/make.log" 2>&1 || fail "cannot build the program: $(tail -3 "$WORK/make.log")"

start_shop() {
	"$WORK/run/shop" >"$LOG" 2>&1 &
	VPID=$!
	wait_line 'status fees on' 10 || fail "the program did not start"
}

# field NAME LINE: the number after NAME in a line of the program's output
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' <<<"$2"; }
# last_line REGEX: the program's last line matching REGEX
last_line() { grep -E "$1" "$LOG" | tail -1; }
# lines_after N REGEX MIN: at least MIN lines after line N match REGEX
lines_after() { [ "$(tail -n +"$(($1 + 1))" "$LOG" | grep -c -E "$2")" -ge "$3" ]; }
# step_after N REGEX: the balance step between two consecutive lines after line N, both matching REGEX
step_after() {
	tail -n +"$(($1 + 1))" "$LOG" | grep -E "$2" | awk '{ if (prev != "") { print $2 - prev; exit } prev = $2 }'
}

build() {
	local diff=$1 out=$2
	"$ULP_BUILD" --source "$WORK/src" --diff "$here/$diff" --binary "$WORK/run/shop" -o "$out" "${@:3}"
}

# expect DIFF LINE: ulp-build refuses DIFF with LINE, and writes nothing
expect() {
	local diff=$1 want=$2 out
	out=$(build "$diff" "$WORK/r.so" 2>&1) && fail "$diff was accepted: $out"
	[ "$(tail -1 <<<"$out")" = "$want" ] || fail "$diff: expected '$want', got '$out'"
	[ ! -e "$WORK/r.so" ] || fail "$diff: a patch was written though refused"
	ok "$diff: $want"
}

case $case in
e2e)
	# The fix waives the fee in fee(), a static inline function the program has no
	# symbol of: deposit() and withdraw(), which inline it, are replaced; status() gets
	# a new string.
	out=$(build fix.diff "$WORK/fix.so" 2>&1) || fail "ulp-build failed: $out"
	grep -qE '^  deposit\(\) +inlines changed fee\(\)$' <<<"$out" || fail "no 'deposit() inlines changed fee()' in: $out"
	grep -qE '^  status\(\) +changed$' <<<"$out" || fail "no 'status() changed' in: $out"
	# fee() is inlined into two callers: both are replaced, and nothing else (audit())
	grep -qE '^  withdraw\(\) +inlines changed fee\(\)$' <<<"$out" || fail "no 'withdraw() inlines changed fee()' in: $out"
	[ "$(grep -cE '^  [a-z_]+\(\) ' <<<"$out")" = 3 ] || fail "not exactly deposit(), withdraw() and status() replaced: $out"
	grep -q "uses the program's own: balance deposits rate" <<<"$out" || fail "the program's own symbols are not listed: $out"
	ok "report: $(tr '\n' '|' <<<"$out")"
	info=$(ulpctl info "$WORK/fix.so") || fail "info refused the patch: $info"
	grep -q '^function: *(main):deposit -> deposit$' <<<"$info" || fail "info: $info"
	grep -q '^pinned: *(main) build-id ' <<<"$info" || fail "the patch is not pinned to the program's build-id: $info"
	grep -q '^uses: *(main):deposits (1 field)$' <<<"$info" || fail "info does not list the program's deposits: $info"
	json=$(ulpctl info --json "$WORK/fix.so") || fail "info --json: $json"
	python3 - "$here/../../docs/ulpctl.schema.json" "$json" <<'PY' || fail "info --json: $json"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.loads(sys.argv[2])
jsonschema.Draft202012Validator({"$ref": "#/$defs/info", "$defs": schema["$defs"]}).validate(doc)
assert {"object": "", "symbol": "deposits", "fields": 1} in doc["uses"], doc["uses"]
PY

	start_shop
	out=$(ulpctl check -p "$VPID" "$WORK/fix.so" 2>&1) || fail "ulpctl check refused what ulp-build made: $out"
	wait_for 10 lines_after 0 'status fees on' 3 || fail "the program does not run"
	before=$(last_line 'status fees on')
	[ "$(step_after 0 'fees on')" = 9 ] || fail "the program's fee is not 1 in 10 before the patch"
	n=$(wc -l <"$LOG")
	out=$(ulpctl apply -p "$VPID" "$WORK/fix.so" 2>&1) || fail "apply failed: $out"
	wait_line 'status fees waived' 10 "$n" || fail "the program never printed the new string"
	wait_for 10 lines_after "$n" 'fees waived' 3 || fail "the program stopped"
	after=$(grep 'fees waived' "$LOG" | head -1)
	# deposits is the program's own static counter: it goes on, it does not start again
	[ "$(field deposits "$after")" -gt "$(field deposits "$before")" ] ||
		fail "the counter did not go on: before '$before', after '$after'"
	[ "$(step_after "$n" 'fees waived')" = 10 ] || fail "the fee is not waived after the patch"
	ok "applied: '$before' then '$after'"
	n=$(wc -l <"$LOG")
	out=$(ulpctl revert -p "$VPID" fix 2>&1) || fail "revert failed: $out"
	wait_line 'status fees on' 10 "$n" || fail "the program did not go back"
	wait_for 10 lines_after "$n" 'fees on' 3 || fail "the program stopped"
	[ "$(step_after "$n" 'fees on')" = 9 ] || fail "the fee is not back after the revert"
	ok "reverted: $(last_line 'fees on')"
	;;
new)
	# A function the program does not have travels in the patch.
	out=$(build new.diff "$WORK/new.so" --json 2>&1) || fail "ulp-build failed: $out"
	python3 - "$out" <<'PY' || fail "unexpected JSON: $out"
import json, sys
j = json.loads(sys.argv[1])
assert [f["name"] for f in j["replaces"]] == ["audit"], j
assert j["replaces"][0]["reason"] == "changed", j
assert j["new"] == ["audit_twice"], j
assert j["program_symbols"] == ["deposits"], j
PY
	start_shop
	before=$(last_line 'fees on')
	out=$(ulpctl check -p "$VPID" "$WORK/new.so" 2>&1) || fail "ulpctl check refused what ulp-build made: $out"
	n=$(wc -l <"$LOG")
	out=$(ulpctl apply -p "$VPID" "$WORK/new.so" 2>&1) || fail "apply failed: $out"
	# audit() now reports twice the program's own counter
	check_twice() {
		local l
		l=$(tail -n +"$((n + 1))" "$LOG" | tail -1)
		[ -n "$l" ] && [ "$(field deposits "$l")" -ge $((2 * $(field deposits "$before"))) ]
	}
	wait_for 10 check_twice || fail "audit did not double: before '$before', now '$(tail -1 "$LOG")'"
	ok "new function runs: '$before' then '$(tail -1 "$LOG")'"
	;;
newfile)
	# The fix adds a source file, loyalty.c, whose loyalty_bonus() the changed deposit()
	# calls: it travels in the patch, with its own static counter, and reads the
	# program's own rate; it calls loyalty_cap(), new in bank.c, which reads the
	# program's own deposits (a copy in the patch would read 0: no bonus).
	# loyalty_bonuses(), which nothing changed calls, does not travel.
	out=$(build newfile.diff "$WORK/newfile.so" 2>&1) || fail "ulp-build failed: $out"
	grep -qE '^  deposit\(\) +changed$' <<<"$out" || fail "no 'deposit() changed' in: $out"
	grep -qE '^  loyalty_bonus\(\) +new \(travels in the patch\)$' <<<"$out" || fail "loyalty_bonus() does not travel: $out"
	grep -qE '^  loyalty_cap\(\) +new \(travels in the patch\)$' <<<"$out" || fail "loyalty_cap() does not travel: $out"
	! grep -q 'loyalty_bonuses' <<<"$out" || fail "loyalty_bonuses() travels though nothing calls it: $out"
	grep -q "uses the program's own: balance deposits rate$" <<<"$out" || fail "the program's own symbols: $out"
	ok "report: $(tr '\n' '|' <<<"$out")"
	start_shop
	out=$(ulpctl check -p "$VPID" "$WORK/newfile.so" 2>&1) || fail "ulpctl check refused what ulp-build made: $out"
	wait_for 10 lines_after 0 'fees on' 3 || fail "the program does not run"
	[ "$(step_after 0 'fees on')" = 9 ] || fail "a deposit of 10 does not add 9 before the patch"
	out=$(ulpctl apply -p "$VPID" "$WORK/newfile.so" 2>&1) || fail "apply failed: $out"
	# 10 - a fee of 1 + a bonus of 10 * 10 / (rate * 5) = 2, with the program's rate of
	# 10, capped at 2 after the program's 6th deposit
	step11() { [ "$(step_after "$(wc -l <"$LOG" | awk '{ print $1 - 3 }')" 'fees on')" = 11 ]; }
	wait_for 10 step11 || fail "the bonus is not paid: $(tail -3 "$LOG" | tr '\n' '|')"
	ok "applied: $(tail -2 "$LOG" | tr '\n' '|')"
	out=$(ulpctl revert -p "$VPID" newfile 2>&1) || fail "revert failed: $out"
	step9() { [ "$(step_after "$(wc -l <"$LOG" | awk '{ print $1 - 3 }')" 'fees on')" = 9 ]; }
	wait_for 10 step9 || fail "the bonus is still paid after the revert: $(tail -3 "$LOG" | tr '\n' '|')"
	ok "reverted: $(tail -2 "$LOG" | tr '\n' '|')"
	;;
redirect)
	# A changed function ulp cannot redirect is refused by ulp-build itself, with the
	# line ulpctl gives (patcher/entry-check.c, one rule for both): twice() is shorter
	# than the jump and thrice() starts right after it; sum_to()'s loop branches back
	# into the bytes the jump would replace.
	tiny_why="function twice is too small to patch (4 bytes, a jump needs 5): only 0 byte(s) of padding follow it, then thrice"
	expect tiny.diff "ulp-build: the fix changes twice() of tiny.c, and ulpctl would refuse it: $tiny_why"
	expect loop.diff "ulp-build: the fix changes sum_to() of tiny.c, and ulpctl would refuse it: cannot redirect sum_to: branch at +0xa into the displaced bytes (+0x2)"
	cc -shared -fPIC -I "$here/../../include" -o "$WORK/twice.so" "$here/patch-twice.c" || fail "cannot build patch-twice.so"
	start_shop
	out=$(ulpctl check -p "$VPID" "$WORK/twice.so" 2>&1) && fail "ulpctl check accepted twice(): $out"
	[ "$out" = "ulpctl: $tiny_why" ] || fail "ulpctl check says '$out', ulp-build '$tiny_why'"
	ok "ulpctl check agrees: $out"
	# A function of size 0 in the symbol table: where it ends is unknown.
	cc -O2 -o "$WORK/zero" "$here/victim-zero.c" || fail "cannot build the size-0 victim"
	cc -shared -fPIC -I "$here/../../include" -o "$WORK/zero.so" "$here/patch-zero.c" || fail "cannot build patch-zero.so"
	"$WORK/zero" &
	zpid=$!
	PIDS+=("$zpid")
	# executed and its libc mapped: a look before the exec found bash as the main
	# executable (load test)
	zero_started() {
		[ "$(readlink "/proc/$zpid/exe" 2>/dev/null)" = "$WORK/zero" ] &&
			grep -q 'libc\.so' "/proc/$zpid/maps" 2>/dev/null
	}
	wait_for 10 zero_started || fail "the size-0 victim did not start"
	out=$(ulpctl check -p "$zpid" "$WORK/zero.so" 2>&1) && fail "ulpctl check accepted zero_fn(): $out"
	[ "$out" = "ulpctl: function zero_fn has size 0 in the symbol table: where its code ends is unknown, so its entry cannot take a jump" ] ||
		fail "size 0: $out"
	ok "size 0: $out"
	;;
early)
	# Refused before anything is built (the build command would leave a mark): a
	# non-PIE executable, a diff to a C++ source.
	early() {
		local bin=$1 diff=$2 want=$3 out
		out=$("$ULP_BUILD" --source "$WORK/src" --diff "$diff" --binary "$bin" --build "touch '$WORK/built'; make" \
			-o "$WORK/r.so" 2>&1) && fail "${diff##*/} was accepted for ${bin##*/}: $out"
		[ "$out" = "$want" ] || fail "${diff##*/}: expected '$want', got '$out'"
		[ ! -e "$WORK/built" ] || fail "${diff##*/}: the tree was built before the refusal"
		[ ! -e "$WORK/r.so" ] || fail "${diff##*/}: a patch was written though refused"
		ok "before any build: $out"
	}
	cp -r "$here/shop" "$WORK/nopie"
	make -s -C "$WORK/nopie" CC=cc CFLAGS='-O2 -g -fno-pie -no-pie' >"$WORK/make.log" 2>&1 ||
		fail "cannot build the non-PIE program: $(tail -3 "$WORK/make.log")"
	early "$WORK/nopie/shop" "$here/fix.diff" "ulp-build: $WORK/nopie/shop is not position-independent (built without -fPIE): a patch cannot hold the 32-bit absolute addresses its code uses; rebuild it with -fPIE -pie"
	early "$WORK/run/shop" "$here/cxx.diff" "ulp-build: the diff changes the C++ source ledger.cc: C++ is not supported (inline functions and templates are in COMDAT groups, which ulp-build does not compare)"
	# A C header change that changes a C++ object: refused once the builds show it.
	expect cxxhdr.diff "ulp-build: the diff changes ledger_scale() of the C++ file ledger.cc: C++ is not supported (inline functions and templates are in COMDAT groups, which ulp-build does not compare)"
	# -flto: the compiler wrapper refuses the first compilation, before it runs.
	out=$(TMPDIR=$WORK build fix.diff "$WORK/r.so" --build 'make CFLAGS="-O2 -g -flto"' --keep 2>&1) &&
		fail "an LTO build was accepted: $out"
	scratch=$(sed -n 's/^ulp-build: scratch directory kept: //p' <<<"$out")
	out=$(grep -v '^ulp-build: scratch directory kept: ' <<<"$out")
	[ "$out" = "ulp-build: the build compiles main.c with -flto: link-time optimization makes the code across files at link time, where ulp-build's comparison of one object at a time cannot see it; build without -flto (e.g. --build 'make CFLAGS=...')" ] ||
		fail "lto: $out"
	[ -d "$scratch/tree" ] || fail "lto: no scratch tree kept: '$scratch'"
	[ -z "$(find "$scratch/tree" -name '*.o')" ] || fail "lto: something was compiled: $(find "$scratch/tree" -name '*.o')"
	[ ! -e "$WORK/r.so" ] || fail "lto: a patch was written though refused"
	ok "lto: $out"
	;;
refusals)
	expect size.diff "ulp-build: the diff changes the size of balance in bank.c (16 to 32 bytes): a live patch cannot change the layout of data; keep new fields in shadow variables (ulp/shadow.h)"
	expect init.diff "ulp-build: the diff changes the initial value of rate in bank.c: a live patch cannot change data the program already holds; set it from a post_patch callback, or keep new state in shadow variables (ulp/shadow.h)"
	expect noop.diff "ulp-build: the diff changes nothing that the build compiles"
	echo "not a diff" >"$WORK/garbage.diff"
	out=$("$ULP_BUILD" --source "$WORK/src" --diff "$WORK/garbage.diff" --binary "$WORK/run/shop" -o "$WORK/r.so" 2>&1) &&
		fail "garbage was accepted"
	grep -q "^ulp-build: the diff does not apply to $WORK/src with patch -p1: " <<<"$out" || fail "garbage: $out"
	ok "garbage: refused"
	cp "$WORK/run/shop" "$WORK/stripped" && strip "$WORK/stripped"
	out=$("$ULP_BUILD" --source "$WORK/src" --diff "$here/fix.diff" --binary "$WORK/stripped" -o "$WORK/r.so" 2>&1) &&
		fail "a stripped binary was accepted"
	[ "$out" = "ulp-build: $WORK/stripped has no symbol table (.symtab): give the unstripped binary" ] ||
		fail "stripped: $out"
	ok "stripped: refused"
	# A clean tree that is not what the program was built from: a function's size differs.
	sed -i 's/return deposits;/return deposits + 1000 * rate;/' "$WORK/src/bank.c"
	out=$(build fix.diff "$WORK/r.so" 2>&1) && fail "a tree other than the program's was accepted: $out"
	grep -q "^ulp-build: the clean build differs from $WORK/run/shop" <<<"$out" || fail "other tree: $out"
	ok "other tree: $out"
	# The same size, other bytes: the bytes of the functions it compares are checked too.
	cp "$here/shop/bank.c" "$WORK/src/bank.c"
	sed -i 's/account & 3/account \& 2/g' "$WORK/src/bank.c"
	out=$(build fix.diff "$WORK/r.so" 2>&1) && fail "a tree with other bytes was accepted: $out"
	grep -q "^ulp-build: the clean build differs from $WORK/run/shop: deposit() of bank.c has other bytes there (at +0x" <<<"$out" ||
		fail "other bytes: $out"
	ok "other bytes: $out"
	;;
lib)
	# The program's own library, built -fPIC: its code reaches fee_percent through the
	# GOT, which ulp-build rewrites to reach the library's variable directly.
	out=$("$ULP_BUILD" --source "$WORK/src" --diff "$here/lib.diff" --binary "$WORK/run/libfees.so.1" \
		-o "$WORK/lib.so" 2>&1) || fail "ulp-build failed: $out"
	grep -qE '^  fee_on\(\) +changed$' <<<"$out" || fail "no 'fee_on() changed' in: $out"
	grep -q "uses the program's own: fee_percent fees_taken$" <<<"$out" || fail "the library's symbols are not listed: $out"
	info=$(ulpctl info "$WORK/lib.so") || fail "info refused the patch: $info"
	grep -q '^function: *libfees.so.1:fee_on -> fee_on$' <<<"$info" || fail "info: $info"
	start_shop
	wait_for 10 lines_after 0 'fee 2 taken' 3 || fail "the program does not run"
	before=$(last_line 'fee 2 taken')
	out=$(ulpctl check -p "$VPID" "$WORK/lib.so" 2>&1) || fail "ulpctl check refused what ulp-build made: $out"
	n=$(wc -l <"$LOG")
	out=$(ulpctl apply -p "$VPID" "$WORK/lib.so" 2>&1) || fail "apply failed: $out"
	wait_line 'fee 4 taken' 10 "$n" || fail "the library's fix does not run"
	after=$(grep 'fee 4 taken' "$LOG" | head -1)
	[ "$(field taken "$after")" -gt "$(field taken "$before")" ] ||
		fail "the library's counter did not go on: before '$before', after '$after'"
	ok "applied: '$before' then '$after'"
	n=$(wc -l <"$LOG")
	out=$(ulpctl revert -p "$VPID" lib 2>&1) || fail "revert failed: $out"
	wait_line 'fee 2 taken' 10 "$n" || fail "the library did not go back"
	ok "reverted: $(last_line 'fee 2 taken')"
	;;
example)
	# examples/ulp-build-ci: the CI flow, as an operator runs it.
	out=$(ULPCTL="$ULPCTL" ULP_BUILD="$ULP_BUILD" "$here/../../examples/ulp-build-ci/ci.sh" 2>&1) ||
		fail "examples/ulp-build-ci/ci.sh failed: $out"
	for want in '^version 1 answers: price 5 = 450 served 1$' '^  price\(\) +changed$' '^ok: price 9 = 900 served 3$' \
		'^ok: price 20 = 1800 served 5$' '^after the revert: price 5 = 450 served 6$' '^ci: the fix passed'; do
		grep -qE "$want" <<<"$out" || fail "no line /$want/ in: $out"
	done
	ok "examples/ulp-build-ci/ci.sh: $(tail -1 <<<"$out")"
	;;
rels)
	# ulp_rels records are checked like every other record, before anything is written.
	out=$(build fix.diff "$WORK/fix.so" 2>&1) || fail "ulp-build failed: $out"
	start_shop
	for m in "type:ulp_rels[0]: unknown type 7" "where:ulp_rels[0]: the field lies outside the patch's file image"; do
		python3 "$here/mutate-rels.py" "$WORK/fix.so" "$WORK/bad.so" "${m%%:*}" || fail "cannot mutate the patch"
		out=$(ulpctl apply -p "$VPID" "$WORK/bad.so" 2>&1) && fail "a patch with a bad record applied: $out"
		[ "$out" = "ulpctl: bad patch bad.so: ${m#*:}" ] || fail "unexpected refusal: $out"
		ok "${m%%:*}: $out"
	done
	n=$(wc -l <"$LOG")
	wait_for 10 lines_after "$n" 'status fees on' 2 || fail "the program stopped"
	grep -q 'fees waived' "$LOG" && fail "a refused patch changed the program"
	ok "the program runs unchanged"
	;;
*)
	fail "unknown case $case"
	;;
esac
