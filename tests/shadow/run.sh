#!/usr/bin/env bash
# Shadow variables in a real victim (docs/shadow.md), with ulpctl --direct: patch A keeps a
# deposit counter per account in shadow variables; patch B replaces A and goes on with
# the same counters; a forked child has them too; reverting B frees them all in its
# post-unpatch callback and the victim is the original again. Refusals: a constructor
# that fails (the apply is cancelled), an API ulp does not have, the runtime's name.
# Env (from meson): ULPCTL, PATCHDIR, VICTIM.
set -uo pipefail

P=$PATCHDIR
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ulpctl() { "$ULPCTL" --direct "$@"; }
last() { grep -E '^tick=' "$LOG" | tail -n 1; }
audits() { last | sed -n 's/.*audit=\([^ ]*\).*/\1/p'; }
# offsets LINE: per account, deposits made minus deposits counted
offsets() {
	echo "$1" | sed -n 's/.*audit=\([^ ]*\) calls=\(.*\)/\1 \2/p' |
		awk '{ split($1, a, ","); split($2, c, ","); print c[1]-a[1], c[2]-a[2], c[3]-a[3], c[4]-a[4] }'
}
# same_offsets LINE1 LINE2: per account, deposits made minus deposits counted is the same
# on both lines, give or take 50 (the deposits racing with a line's printing); sets off1
# and off2 to those differences, and bad to the first account where they differ.
same_offsets() {
	local i d
	read -r -a off1 <<<"$(offsets "$1")"
	read -r -a off2 <<<"$(offsets "$2")"
	for i in 0 1 2 3; do
		d=$(( off2[i] - off1[i] ))
		[ "${d#-}" -le 50 ] || { bad=$i; return 1; }
	done
}
version_is() { last | grep " version=$1 " >/dev/null; }
# sum of the four audit values on the newest line
audit_sum() { audits | tr ',' '\n' | awk '{ s += $1 } END { print s }'; }
runtime_maps() { grep -c 'ulp-patch:ulp-shadow-runtime' "/proc/$VPID/maps"; }
status_line() { ulpctl status -p "$VPID" | grep 'shadow variables:'; }

refused() {
	local out rc
	out=$(ulpctl apply -p "$VPID" "$P/$1" 2>&1); rc=$?
	[ "$rc" -ne 0 ] || fail "apply $1 was not refused"
	[ "$out" = "ulpctl: $2" ] || fail "apply $1: '$out', expected 'ulpctl: $2'"
	echo "refused: $out"
	victim_ok
}

"$VICTIM" >"$LOG" 2>&1 &
VPID=$!
wait_line '^tick=' 5 || fail "the victim did not start"
version_is 0 || wait_for 2 version_is 0 || fail "not the original: $(last)"
[ "$(audits)" = "-1,-1,-1,-1" ] || fail "the original audits nothing: $(last)"

# An API that does not exist: refused before anything is written.
refused shadow-patch-unknown.so "undefined symbol ulp_shadow_resize is not part of ulp's shadow-variable API"
# A patch named as the runtime's mapping: it would be taken for the runtime.
refused shadow-patch-reserved.so "bad patch shadow-patch-reserved.so: the patch name \"ulp-shadow-runtime\" is reserved for ulp's shadow-variable runtime: ULP_PATCH_INFO must give the patch another name"
! grep -q 'memfd:ulp' "/proc/$VPID/maps" || fail "ulp mappings left after a refusal"

# A constructor that fails: the callback gives up, the apply is cancelled; the runtime
# it brought stays (one, for the process's lifetime), holding no variable.
refused shadow-patch-ctorfail.so "the patch's pre-patch callback refused (returned 12): nothing changed"
[ "$(runtime_maps)" -gt 0 ] || fail "no runtime mapped"
maps_before=$(runtime_maps)
status_line | grep -E '^  shadow variables: 0 \(0 bytes; the runtime holds [0-9]+ KiB\)$' >/dev/null ||
	fail "status after the cancelled apply: '$(status_line)'"
ok "a failing constructor cancels the apply; no variable left"

# Patch A: its pre-patch checks (alloc of an existing pair, constructor failure) pass in
# the target, then each account counts its deposits.
out=$(ulpctl apply -p "$VPID" "$P/shadow-patch-count.so" 2>&1) || fail "apply A: $out"
wait_for 5 version_is 1 || fail "patch A does not run: $(last)"
wait_for 10 eval '[ "$(audit_sum)" -ge 200 ]' || fail "the counters do not count: $(last)"
echo "$(last)"
[ "$(runtime_maps)" = "$maps_before" ] || fail "a second runtime was mapped"
status_line | grep -E '^  shadow variables: 4 \(32 bytes; the runtime holds [0-9]+ KiB\)$' >/dev/null ||
	fail "status with A: '$(status_line)'"
ok "patch A counts deposits in 4 shadow variables"

# A forked child has the parent's variables in its own memory.
kill -USR1 "$VPID"
wait_line '^child ' 5 || fail "no child line"
child=$(grep '^child ' "$LOG" | tail -n 1)
echo "$child"
c0=$(echo "$child" | sed -n 's/.*audit=\([0-9]*\),.*/\1/p')
after=$(echo "$child" | sed -n 's/.* after=//p')
[ -n "$c0" ] && [ "$c0" -gt 0 ] && [ "$after" -eq $((c0 + 1)) ] || fail "the child's counters: $child"
ok "a forked child keeps and counts its copy of the variables"

# Patch B replaces A and continues the counters: per account, the deposits made minus
# those counted stays what it was under A (give or take the deposits racing with a
# line's printing); fresh counters would lose all that A had counted.
wait_for 10 eval '[ "$(audits | tr , "\n" | sort -n | head -n 1)" -ge 100 ]' || fail "A counts too slowly: $(last)"
line_a=$(last)
out=$(ulpctl apply -p "$VPID" "$P/shadow-patch-count2.so" 2>&1) || fail "apply B: $out"
wait_for 5 version_is 2 || fail "patch B does not run: $(last)"
line_b=$(grep -E '^tick=.* version=2 ' "$LOG" | head -n 1)
same_offsets "$line_a" "$line_b" || fail "B did not continue A's counter of account $bad: $line_a, then $line_b"
ulpctl status -p "$VPID" | grep 'shadow-count2: patched, replace' >/dev/null || fail "B not shown as a replacement"
status_line | grep -E '^  shadow variables: 4 \(32 bytes;' >/dev/null || fail "status with B: '$(status_line)'"
ok "patch B continues the counters (uncounted deposits ${off1[*]}, then ${off2[*]})"

# Reverting B frees every counter (its post-unpatch callback): the original again.
out=$(ulpctl revert -p "$VPID" shadow-count2 2>&1) || fail "revert B: $out"
wait_for 5 version_is 0 || fail "not the original after the revert: $(last)"
[ "$(audits)" = "-1,-1,-1,-1" ] || fail "the original audits nothing: $(last)"
status_line | grep -E '^  shadow variables: 0 \(0 bytes; the runtime holds [0-9]+ KiB\)$' >/dev/null ||
	fail "status after the revert: '$(status_line)'"
ulpctl status -p "$VPID" --json | grep '"shadow": *{ *"variables": *0, *"bytes": *0' >/dev/null ||
	fail "JSON status: $(ulpctl status -p "$VPID" --json)"
python3 - "$(dirname "${BASH_SOURCE[0]}")/../../docs/ulpctl.schema.json" "$(ulpctl status -p "$VPID" --json)" <<'PY' ||
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator({"$ref": "#/$defs/status", "$defs": schema["$defs"]}).validate(json.loads(sys.argv[2]))
PY
	fail "JSON status does not match docs/ulpctl.schema.json: $(ulpctl status -p "$VPID" --json)"
victim_ok
ok "reverting B frees all the variables"

# And again: A on a process whose runtime is there already binds to it.
out=$(ulpctl apply -p "$VPID" "$P/shadow-patch-count.so" 2>&1) || fail "apply A again: $out"
wait_for 5 version_is 1 || fail "patch A does not run again: $(last)"
wait_for 10 eval '[ "$(audit_sum)" -ge 8 ]' || fail "the counters do not count again: $(last)"
[ "$(runtime_maps)" = "$maps_before" ] || fail "a second runtime was mapped"
victim_ok
ok "a later patch binds to the same runtime"

# A patch stacked on A reads A's counters: the same variables, the same totals.
line_a=$(last)
out=$(ulpctl apply -p "$VPID" "$P/shadow-patch-peek.so" 2>&1) || fail "apply the stacked patch: $out"
wait_for 5 version_is 3 || fail "the stacked patch does not run: $(last)"
line_c=$(grep -E '^tick=.* version=3 ' "$LOG" | head -n 1)
same_offsets "$line_a" "$line_c" ||
	fail "the stacked patch does not see A's counter of account $bad: $line_a, then $line_c"
ok "a stacked patch sees the variables of the patch below (uncounted ${off1[*]}, then ${off2[*]})"

# A callback on a thread stopped inside ulp_shadow_alloc: a single-threaded victim that
# spends most of its time in a shadow variable's constructor; the pre-unpatch callback,
# borrowing that thread, frees every such variable. It must return at once (constructors
# run without the writers' lock), each time.
kill -9 "$VPID"; wait "$VPID" 2>/dev/null
LOG=$WORK/single.log
: >"$LOG"   # emptied before: the job truncates it only once it runs
"$VICTIM" single >"$LOG" 2>&1 &
VPID=$!
wait_line '^tick=' 5 || fail "the single-threaded victim did not start"
for round in 1 2 3; do
	out=$(ulpctl apply -p "$VPID" "$P/shadow-patch-slowctor.so" 2>&1) || fail "apply slowctor: $out"
	wait_for 5 version_is 5 || fail "slowctor does not run: $(last)"
	out=$(ulpctl revert --callback-timeout 3000 -p "$VPID" shadow-slowctor 2>&1) ||
		fail "revert slowctor, round $round: $out"
	wait_for 5 version_is 0 || fail "not the original after the revert: $(last)"
	status_line | grep -E '^  shadow variables: 0 \(0 bytes;' >/dev/null || fail "status after the revert: '$(status_line)'"
done
victim_ok
ok "callbacks freeing variables on a thread stopped in a constructor return"

# A callback never runs on a thread inside the runtime: the single thread spends much of
# its time in ulp_shadow_free_all, holding the writers' lock; the pre-unpatch callback
# allocates. Borrowed inside the runtime, the thread would find its own lock taken.
for round in 1 2 3 4 5 6 7 8; do
	out=$(ulpctl apply -p "$VPID" "$P/shadow-patch-spin.so" 2>&1) || fail "apply spin: $out"
	wait_for 5 version_is 6 || fail "spin does not run: $(last)"
	out=$(ulpctl revert -p "$VPID" shadow-spin 2>&1) || fail "revert spin, round $round: $out"
	wait_for 5 version_is 0 || fail "not the original after the revert: $(last)"
done
victim_ok
ok "callbacks are not run on a thread inside the runtime"
