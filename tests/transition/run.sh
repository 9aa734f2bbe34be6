#!/usr/bin/env bash
# End-to-end cases of the transition engine: a real multithreaded victim (tests/victims/consistency.c),
# patched with ulpctl --direct. Each case checks what the victim itself prints.
# Usage: run.sh CASE   (env: ULPCTL, VICTIM, PENDING, PATCHDIR from meson)
set -uo pipefail

CASE=$1
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=

ulpctl() { "$ULPCTL" --direct "$@"; }
P=$PATCHDIR
last_child() { grep -E '^child v1=' "$LOG" | tail -n 1; }

start_victim() {
	: >"$LOG"   # emptied before: the job truncates it only once it runs
	"$VICTIM" "$@" >"$LOG" 2>&1 &
	VPID=$!
	wait_for 5 grep -q '^v1=' "$LOG" || fail "victim did not start"
}

start_blocked() {
	mkfifo "$WORK/fifo"
	start_victim -b "$WORK/fifo" "$@"
	wait_for 5 grep -q 'blocked=1' "$LOG" || fail "blocker not blocked"
}

release() { echo x >"$WORK/fifo"; }

# apply_held SECONDS: the consistency patch's apply with that timeout (times SLOW), in the
# background (its pid in APID, its output in WORK/out), while the blocker holds it up.
apply_held() {
	ulpctl apply --timeout $(($1 * SLOW)) -p "$VPID" "$PATCH_CONS" >"$WORK/out" 2>&1 &
	APID=$!
}

# shows KEY VALUE: from the next lines on, the victim prints KEY=VALUE
shows() {
	local from
	from=$(wc -l <"$LOG")
	wait_for 5 eval "tail -n +$((from + 1)) \"\$LOG\" | grep -E '(^| )$1=$2( |\$)' >/dev/null" || fail "$1 never became $2 ($(last_tick))"
}

no_mix() {
	fresh
	[ "$(now mixed)" = 0 ] || fail "mixed calls: $(now mixed) ($(grep '^MIX' "$LOG" | head -n 3 | tr '\n' ';'))"
}

patch_mapped() { grep -q "memfd:ulp-patch:$1 " "/proc/${2:-$VPID}/maps"; }

json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# status_of PID EXPR: evaluates EXPR on the list of patches of PID ("p")
status_of() {
	ulpctl status --json -p "$1" | json_get "(lambda p: $2)(d['processes'][0]['patches'])"
}

# Callbacks run in order, inside the victim: pre-patch before anything is visible,
# post-patch after completion, then pre-unpatch and post-unpatch around the revert.
case_callbacks() {
	start_victim -n 4
	ulpctl apply -p "$VPID" "$P/patch-cb.so" || fail "apply failed"
	shows cb 'pre:0,post:[0-9]+'
	rises v2 2 || fail "new code does not run"
	ulpctl revert -p "$VPID" cb || fail "revert failed"
	shows cb 'pre:0,post:[0-9]+,preun,postun'
	rises v1 2 || fail "old code does not run after revert"
	steady v2 || fail "new code still runs after revert"
	no_mix
	victim_ok
}

# A pre-patch callback that refuses cancels the apply: exit 1, one line, nothing
# visible (no patch mapping, the new code never ran), and the process can be patched.
case_callback_refuses() {
	local rc err
	start_victim -n 4
	err=$(ulpctl apply -p "$VPID" "$P/patch-cb-refuse.so" 2>&1 >/dev/null); rc=$?
	[ "$rc" = 1 ] || fail "apply exit $rc, expected 1: $err"
	[ "$(echo "$err" | wc -l)" = 1 ] || fail "not one line: $err"
	grep -q 'pre-patch callback refused' <<<"$err" || fail "message: $err"
	shows cb refuse
	! patch_mapped cb-refuse || fail "patch mapping left"
	[ "$(now v2)" = 0 ] || fail "new code ran"
	rises v1 2 || fail "old code stopped"
	[ "$(status_of "$VPID" 'len([x for x in p if x["state"] != "unpatched"])')" = 0 ] || fail "status shows a patch"
	victim_ok
	ulpctl apply -p "$VPID" "$PATCH_CONS" || fail "apply after the refusal failed"
	rises v2 2 || fail "new code does not run"
	no_mix
}

# A replaces fa, B replaces ga; C (ULP_REPLACE) replaces fa only: fa gets C, ga goes
# back to the original, A and B are unmapped, status shows C alone.
case_replace() {
	start_victim -n 2
	shows f 1
	ulpctl apply -p "$VPID" "$P/patch-a.so" || fail "apply A failed"
	shows f 10
	ulpctl apply -p "$VPID" "$P/patch-b.so" || fail "apply B failed"
	shows g 20
	patch_mapped rep-a && patch_mapped rep-b || fail "A and B not mapped"
	ulpctl apply -p "$VPID" "$P/patch-c.so" || fail "apply C failed"
	shows f 30
	shows g 1
	! patch_mapped rep-a || fail "A still mapped"
	! patch_mapped rep-b || fail "B still mapped"
	[ "$(status_of "$VPID" '[x["name"] for x in p]')" = "['rep-c']" ] || fail "status: $(ulpctl status -p "$VPID")"
	ulpctl status -p "$VPID" | grep 'rep-c: patched, replace' >/dev/null || fail "status: $(ulpctl status -p "$VPID")"
	ulpctl revert -p "$VPID" rep-c || fail "revert C failed"
	shows f 1
	shows g 1
	! patch_mapped rep-c || fail "C still mapped"
	victim_ok
}

# some threads switched: the transition started (the blocker holds it)
switching() { [ "$(now v2)" -gt 0 ] 2>/dev/null; }
main_in_d() { [ "$(cut -d' ' -f3 "/proc/$VPID/stat")" = D ]; }

# --force whose stop of every thread, past the deadline, meets a thread that cannot be
# stopped (the main thread in vfork, uninterruptible): tried again at the next steps, for
# another timeout, and completed once the thread can stop; before, the force failed.
case_force_late() {
	local out hold=$WORK/vfork-hold t=$((3 * SLOW))
	start_blocked -n 4 -V "$hold"
	ulpctl apply --json --force --timeout "$t" -p "$VPID" "$PATCH_CONS" >"$WORK/out" 2>&1 &
	APID=$!
	PIDS+=("$APID")
	wait_for 10 switching || fail "the transition did not start: $(cat "$WORK/out")"
	# the deadline is at most t s away: the vfork starts before it and ends after it
	kill -WINCH "$VPID"
	wait_for 5 main_in_d || fail "the main thread did not enter vfork"
	sleep $((t + 1))
	kill -0 "$APID" 2>/dev/null || fail "the forced apply ended while the main thread could not stop: $(cat "$WORK/out")"
	touch "$hold"
	wait_line 'vfork ended' 5 || fail "the vfork did not end"
	wait "$APID" || fail "forced apply failed: $(cat "$WORK/out")"
	out=$(cat "$WORK/out")
	[ "$(echo "$out" | json_get 'd["forced"]')" = True ] || fail "not forced: $out"
	echo "$out" | json_get 'd["warnings"]' | grep 'forced: 1 thread(s) switched without the check' >/dev/null ||
		fail "no forced warning: $out"
	rises v2 2 || fail "new code does not run"
	steady v1 || fail "old code still runs after a forced completion"
	release
	no_mix
	victim_ok
}

# --force with a thread blocked in a patched function: completes, says forced, and the
# patch code stays mapped after the revert.
case_force() {
	local out
	start_blocked -n 4
	out=$(ulpctl apply --json --force --timeout 1 -p "$VPID" "$PATCH_CONS") || fail "forced apply failed: $out"
	[ "$(echo "$out" | json_get 'd["forced"]')" = True ] || fail "not forced: $out"
	rises v2 2 || fail "new code does not run"
	steady v1 || fail "old code still runs after a forced completion"
	[ "$(status_of "$VPID" '[(x["state"], x["forced"]) for x in p if x["name"] == "consistency"]')" = "[('patched', True)]" ] ||
		fail "status: $(ulpctl status --json -p "$VPID")"
	ulpctl status -p "$VPID" | grep 'consistency: patched, forced' >/dev/null || fail "human status does not say forced"
	ulpctl revert -p "$VPID" consistency || fail "revert failed"
	rises v1 2 || fail "old code does not run after revert"
	patch_mapped consistency || fail "forced patch code was unmapped"
	release
	wait_for 5 eval '[ "$(now blocked)" = 0 ]' || fail "blocked thread not released"
	no_mix
	victim_ok
}

# Threads created during a transition: short-lived threads keep being created while a
# blocked thread holds the transition up. After an init that stops every thread they run
# the target state (the new code only). After init without a stop (the default, or
# ULP_NOSTOP_INIT=1) a new thread runs the state of the thread table's slot it takes: a
# new slot is in the untabled state, the initial one (the old code), until completion
# flips it; a slot of a thread that exited after it switched is in the target (the new
# code), as is every slot when init fell back to the stop of every thread (a thread
# blocking SIGTRAP for its 20 ms look: threads starting up block every signal for a
# moment, and this victim starts them all the time). Never mixed within a call, and
# only the new code once the apply is done (docs/stops.md, "The untabled state").
case_new_threads() {
	local apid a b
	start_blocked -n 2 -s
	rises s1 2 || fail "spawned threads do not run"
	apply_held 30
	apid=$APID
	if [ "${ULP_NOSTOP_INIT:-1}" = 1 ]; then
		rises v2 5 || fail "no thread switched"
		rises s1 2 || rises s2 2 || fail "threads created during the transition do not run"
		kill -0 "$apid" 2>/dev/null || fail "apply finished with a thread blocked"
		release
		wait "$apid" || fail "apply failed: $(cat "$WORK/out")"
		rises s2 5 || fail "threads created after completion do not run the new code"
		steady s1 || fail "old code runs after completion"
		no_mix
		victim_ok
		return
	fi
	rises s2 5 || fail "new threads do not run the new code"
	sleep 0.5
	kill -0 "$apid" 2>/dev/null || fail "apply finished with a thread blocked"
	a=$(now s1); b=$(now s2); sleep 0.5
	[ "$(now s1)" = "$a" ] || fail "threads created during the transition ran the old code ($a -> $(now s1))"
	[ "$(now s2)" -gt "$b" ] || fail "new threads stopped running"
	release
	wait "$apid" || fail "apply failed: $(cat "$WORK/out")"
	steady s1 || fail "old code runs after completion"
	no_mix
	victim_ok
}

# Applies and reverts while short-lived threads are created all the time (each calls
# outer() once): init enters no thread in the table and completion flips the untabled
# state under its stop (docs/stops.md); no call mixes versions, each operation's result
# runs. The JSON's max_stw_us: per-thread mode stops every thread only at completion
# (reported, > 0: no clone barrier yet; printed). spawn-cycles-stopall: the same with
# the init that stops every thread (a thread created and one released while the stop
# of every thread reads /proc/PID/task: docs/stops.md, "A thread the listing stepped
# over").
case_spawn_cycles() {
	local i out n=${SPAWN_CYCLES:-6} stw=
	export ULP_NOSTOP_INIT=${SPAWN_INIT:-1}
	start_victim -n 4 -s
	rises s1 2 || fail "spawned threads do not run"
	for ((i = 1; i <= n; i++)); do
		out=$(ulpctl apply --json --timeout $((10 * SLOW)) -p "$VPID" "$PATCH_CONS") || fail "apply $i failed: $out"
		stw="$stw $(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["max_stw_us"])')"
		rises s2 5 || fail "apply $i: new threads do not run the new code"
		ulpctl revert --timeout $((10 * SLOW)) -p "$VPID" consistency >"$WORK/out" 2>&1 ||
			fail "revert $i failed: $(cat "$WORK/out")"
		rises s1 5 || fail "revert $i: new threads do not run the old code"
	done
	no_mix
	victim_ok
	echo "$n cycles, per-thread max_stw_us:$stw; $(last_tick)"
}

case_spawn_cycles_stopall() { SPAWN_INIT=0 case_spawn_cycles; }

# A pending thread exits (from inside the patched function): it is dropped and the
# transition completes.
case_thread_exit() {
	local apid
	start_blocked -n 4 -x
	apply_held 30
	apid=$APID
	rises v2 3 || fail "no thread switched"
	kill -0 "$apid" 2>/dev/null || fail "apply finished with a thread blocked"
	release
	wait_for 10 eval '! kill -0 $apid 2>/dev/null' || fail "apply did not finish after the thread exited"
	wait "$apid" || fail "apply failed: $(cat "$WORK/out")"
	steady v1 || fail "old code runs after completion"
	[ "$(ls "/proc/$VPID/task" | wc -l)" -lt 7 ] || fail "the blocked thread did not exit"
	no_mix
	victim_ok
}

# A fork during a transition: the child's thread keeps its state (the table is copied
# with the memory), it never mixes, and status shows the child in transition. A revert
# in the child takes its transition over and finishes it.
case_fork() {
	local apid child
	start_blocked -n 4
	apply_held 30
	apid=$APID
	rises v2 3 || fail "no thread switched"
	kill -USR1 "$VPID"
	wait_for 5 grep -q '^child pid=' "$LOG" || fail "no child"
	child=$(sed -n 's/^child pid=//p' "$LOG" | head -1)
	PIDS+=("$child")
	wait_for 5 eval '[ -n "$(last_child)" ]' || fail "child does not run outer"
	[ "$(status_of "$child" '[(x["name"], x["state"]) for x in p]')" = "[('consistency', 'transition')]" ] ||
		fail "child status: $(ulpctl status --json -p "$child")"
	rises v1 2 last_child || rises v2 2 last_child || fail "child stopped calling outer"
	release
	wait "$apid" || fail "apply failed: $(cat "$WORK/out")"
	rises v1 2 last_child || rises v2 2 last_child || fail "child stopped calling outer"
	[ "$(field mixed "$(last_child)")" = 0 ] || fail "child mixed: $(last_child)"
	ulpctl revert -p "$child" consistency || fail "revert in the child failed"
	rises v1 2 last_child || fail "child does not run the old code after its revert"
	[ "$(field mixed "$(last_child)")" = 0 ] || fail "child mixed: $(last_child)"
	victim_ok "$child"
	no_mix
	victim_ok
}

# An exec during a transition drops the process: the apply ends at once and cleanly.
case_exec() {
	local apid rc i
	start_blocked -n 4
	apply_held 30
	apid=$APID
	rises v2 3 || fail "no thread switched"
	kill -USR2 "$VPID"
	wait_for 5 eval '! kill -0 $apid 2>/dev/null' || fail "apply still running after the exec"
	wait "$apid"; rc=$?
	[ "$rc" = 1 ] || fail "apply exit $rc after exec: $(cat "$WORK/out")"
	grep -q 'executed a new program' "$WORK/out" || fail "message: $(cat "$WORK/out")"
	cat "$WORK/out"
	[ "$(cat "/proc/$VPID/comm")" = sleep ] || fail "victim did not exec"
	victim_ok
}

# status (JSON and human) lists the straggler of a transition in progress.
case_status_stragglers() {
	local apid tid
	start_blocked -n 4
	apply_held 20
	apid=$APID
	wait_for 10 eval '[ "$(status_of "$VPID" "[s[\"function\"].split(\"+\")[0] for x in p for s in x[\"stragglers\"]]" 2>/dev/null)" = "['"'"'blocker'"'"']" ]' ||
		fail "no straggler in status: $(ulpctl status --json -p "$VPID")"
	[ "$(status_of "$VPID" '[x["state"] for x in p]')" = "['transition']" ] || fail "not in transition"
	tid=$(status_of "$VPID" 'p[0]["stragglers"][0]["tid"]')
	[ -d "/proc/$VPID/task/$tid" ] || fail "straggler tid $tid is not a thread of the victim"
	ulpctl status -p "$VPID" | grep -E "straggler: thread $tid \(.+\) in blocker" >/dev/null || fail "human status: $(ulpctl status -p "$VPID")"
	release
	wait "$apid" || fail "apply failed: $(cat "$WORK/out")"
	[ "$(status_of "$VPID" '[(x["state"], len(x["stragglers"])) for x in p]')" = "[('patched', 0)]" ] ||
		fail "status after completion: $(ulpctl status --json -p "$VPID")"
	no_mix
	victim_ok
}

# A patch naming a library not loaded yet applies to what is loaded and records the
# library as pending; once the victim dlopen()s it, ulp_apply_late() patches it.
case_pending_object() {
	start_victim -n 2
	shows base 1
	ulpctl apply -p "$VPID" "$P/patch-pending.so" || fail "apply failed"
	shows base 2
	ulpctl status -p "$VPID" | grep 'late objects: libplugin.so' >/dev/null || fail "status: $(ulpctl status -p "$VPID")"
	[ "$(status_of "$VPID" 'p[0]["pending_objects"]')" = "['libplugin.so']" ] || fail "json status"
	"$PENDING" "$VPID" && fail "apply_pending with the library still missing did something"
	kill -HUP "$VPID"
	shows plugin 100
	"$PENDING" "$VPID" || fail "apply_pending failed"
	shows plugin 200
	shows base 2
	[ "$(status_of "$VPID" 'p[0]["pending_objects"]')" = "[]" ] || fail "still pending after apply_pending"
	ulpctl revert -p "$VPID" pending || fail "revert failed"
	shows plugin 100
	shows base 1
	victim_ok
}

# A thread that is always inside slow() (3 s per call, times SLOW up to 3: the trap
# shows in status only while that call lasts, and a loaded machine is slow to get there;
# the case waits for several such calls): without a return trap the transition cannot
# finish; with one it completes when the thread returns from slow(), which still returns
# the right value (the victim counts those). Revert likewise.
case_return_trap() {
	local rc apid t0 t1 out slow_ms=$((3000 * (SLOW < 3 ? SLOW : 3)))
	start_victim -n 2 -l $((slow_ms * 1000))
	ulpctl apply --timeout "$SLOW" -p "$VPID" "$P/patch-slow.so" 2>"$WORK/err"; rc=$?
	[ "$rc" = 3 ] || fail "apply without a return trap: exit $rc, expected 3: $(cat "$WORK/err")"
	grep -q 'in slow' "$WORK/err" || fail "straggler not named: $(cat "$WORK/err")"
	[ "$(now slow2)" = 0 ] || fail "new code ran after the reversal"
	t0=$(date +%s%N)
	ulpctl apply --return-trap --timeout $((20 * SLOW)) --json -p "$VPID" "$P/patch-slow.so" >"$WORK/out" 2>&1 &
	apid=$!
	wait_for 5 eval '[ "$(status_of "$VPID" "[s[\"function\"] for x in p for s in x[\"stragglers\"]]" 2>/dev/null | grep -c "return trap set")" = 1 ]' ||
		fail "status does not show the trap: $(ulpctl status --json -p "$VPID")"
	wait "$apid" || fail "apply with a return trap failed: $(cat "$WORK/out")"
	cat "$WORK/out"
	t1=$(date +%s%N)
	[ $(( (t1 - t0) / 1000000 )) -lt $((slow_ms + 2000 * SLOW)) ] || fail "took $(( (t1 - t0) / 1000000 )) ms, more than one slow() call"
	rises slow2 5 || fail "the new slow() does not run"
	rises slow 5 || fail "slow() results are no longer right"
	ulpctl revert --return-trap --timeout $((20 * SLOW)) -p "$VPID" slow || fail "revert with a return trap failed"
	out=$(now slow2); rises slow 5 || fail "slow() results are no longer right after revert"
	sleep "$((slow_ms / 1000)).5"
	[ "$(now slow2)" -le $((out + 1)) ] || fail "new code still runs after revert"
	! patch_mapped slow || fail "patch still mapped after revert"
	no_mix
	victim_ok
}

"case_${CASE//-/_}"
echo "PASS: $CASE"
