# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# What every shell test shares, sourced first thing:
#	. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# It makes WORK (a scratch directory of this run only) and, at exit, calls the script's
# on_exit if it defines one (which must not wait for all children: the victim still
# runs), kills VPID (the victim) and the processes listed in PIDS
# (only those the script started) and removes WORK. fail prints the script's fail_details if it defines one.
# Deadlines stretch on a loaded machine (SLOW): each waits for a condition, SLOW only
# says how long before giving up.

# ULP_TEST_SLOWDOWN (scripts/run-tests sets it), else runnable tasks per core, 1 to 10.
SLOW=${ULP_TEST_SLOWDOWN:-$(awk -v n="$(nproc)" '{ s = int($1 / n + 0.999); print (s < 1 ? 1 : (s > 10 ? 10 : s)) }' /proc/loadavg)}
WORK=$(mktemp -d)
# Control blocks signed with a key of this test's own (docs/testing.md): its ulpd and
# ulpctl share it, any other ulpd on the machine leaves this test's victims alone.
if [ -z "${ULP_CONTROL_KEY:-}" ] && [ "$EUID" = 0 ]; then
	export ULP_CONTROL_KEY=$WORK/control.key
	(umask 077 && head -c 16 /dev/urandom >"$ULP_CONTROL_KEY")
fi
PIDS=()
# The victim's output; a script may point it elsewhere.
LOG=$WORK/victim.log

# ppid_of PID: its parent's pid (the field after the command's closing parenthesis)
ppid_of() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	s=${s##*) }
	s=${s#* }
	echo "${s%% *}"
}
# someone_elses PID: PID is no longer a process of this test's but another program's
# (bash reaps a child that ended at once, and on a busy machine its pid is soon given
# again: pid_max may be 32768), known by its ancestry reaching one of this shell's
# ancestors (the test runner, another test) without passing through this shell. An
# orphan reparented to init may be ours: not someone else's.
someone_elses() {
	local p=$1 a ours=" " hops=0
	a=$PPID
	while [ -n "$a" ] && [ "$a" -gt 1 ] && [ $hops -lt 64 ]; do
		ours+="$a "
		a=$(ppid_of "$a") || break
		hops=$((hops + 1))
	done
	hops=0
	while [ -n "$p" ] && [ "$p" -gt 1 ] && [ $hops -lt 64 ]; do
		[ "$p" = "$$" ] && return 1
		[[ $ours == *" $p "* ]] && return 0
		p=$(ppid_of "$p") || return 1
		hops=$((hops + 1))
	done
	return 1
}

lib_exit() {
	local p
	if declare -F on_exit >/dev/null; then on_exit || true; fi
	for p in "${PIDS[@]}" ${VPID:-}; do
		someone_elses "$p" || kill -9 "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap lib_exit EXIT

fail() {
	echo "FAIL: $*" >&2
	if declare -F fail_details >/dev/null; then
		fail_details >&2
	elif [ -f "$LOG" ]; then
		echo "--- last victim lines:" >&2
		tail -n 3 "$LOG" >&2
	fi
	exit 1
}
ok() { echo "ok: $*"; }
skip() { echo "SKIP: $*"; exit 77; }

# deadline SECONDS: the clock (µs) SECONDS times SLOW from now; before END: not yet.
# Deadlines are on the clock, not counted in polls: a poll is slow on a loaded machine.
deadline() { echo $(( ${EPOCHREALTIME/./} + $1 * SLOW * 1000000 )); }
before() { [ "${EPOCHREALTIME/./}" -lt "$1" ]; }

# wait_for SECONDS CMD...: polls CMD every 20 ms until it succeeds (SECONDS times SLOW).
wait_for() {
	local end
	end=$(deadline "$1"); shift
	while :; do
		"$@" && return 0
		before "$end" || return 1
		sleep 0.02
	done
}

# line_after REGEX FROM_LINE: a line of LOG after line FROM_LINE matches REGEX.
line_after() { tail -n +"$(($2 + 1))" "$LOG" 2>/dev/null | grep -E >/dev/null "$1"; }
# wait_line REGEX SECONDS [FROM_LINE]: such a line comes within SECONDS (times SLOW).
wait_line() { wait_for "$2" line_after "$1" "${3:-0}"; }
lines() { wc -l <"$LOG"; }

# expect_value KEY VALUE [SECONDS]: the victim comes to print KEY=VALUE within SECONDS
# (default 5, times SLOW), and every "tick" line of a few after that shows it too.
expect_value() {
	local key=$1 val=$2 from
	from=$(lines)
	wait_line "$key=$val( |\$)" "${3:-5}" "$from" || fail "$key never became $val"
	from=$(( $(lines) + 1 ))
	wait_line 'tick' 2 "$((from + 3))" || fail "victim stopped printing"
	tail -n +"$((from + 1))" "$LOG" | grep 'tick' | grep -v -E "$key=$val( |\$)" >/dev/null &&
		fail "$key is not consistently $val: $(tail -n +"$((from + 1))" "$LOG" | grep 'tick' | grep -v -E "$key=$val( |\$)" | head -1)"
	return 0
}

# The victims that print "v1=... v2=... KEY=VALUE ..." lines (tests/victims/consistency.c).
last_tick() { grep -sE '^v1=' "$LOG" | tail -n 1; }
# field KEY LINE: the value of KEY=... in a victim line
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
now() { field "$1" "$(last_tick)"; }
# fresh: a victim line printed from now on
fresh() {
	local n
	n=$(grep -sc '^v1=' "$LOG")
	wait_for 2 eval '[ "$(grep -sc "^v1=" "$LOG")" -gt '"$n"' ]'
}
# rises KEY SECONDS [LINEFN]: KEY grows within SECONDS (times SLOW); LINEFN gives the line.
rises() {
	local fn=${3:-last_tick} a b end
	a=$(field "$1" "$($fn)")
	end=$(deadline "$2")
	while before "$end"; do
		sleep 0.05
		b=$(field "$1" "$($fn)")
		[ "${b:-0}" -gt "${a:-0}" ] && return 0
	done
	return 1
}
# steady KEY: KEY does not change over 0.3 s of victim lines printed from now on
steady() {
	local a b
	fresh || return 1
	a=$(now "$1"); sleep 0.3; fresh || return 1; b=$(now "$1")
	[ "$a" = "$b" ]
}

# bank_shows FEE: the example bank's newest report shows the fee FEE.
bank_shows() { tail -n 1 "$LOG" | grep "transfer: $1 " >/dev/null; }

# expect_refusal WHAT REGEX CMD...: CMD exits 1 with one line on stderr (warnings aside)
# that matches REGEX (an ERE: the message says what was refused and why).
expect_refusal() {
	local what=$1 re=$2 rc err; shift 2
	err=$("$@" 2>&1 >/dev/null); rc=$?
	[ "$rc" -eq 1 ] || fail "$what: exit $rc, expected 1 ($err)"
	[ "$(echo "$err" | grep -v '^warning:' | wc -l)" -eq 1 ] || fail "$what: not one line: $err"
	echo "$err" | grep -v '^warning:' | grep -E >/dev/null "$re" || fail "$what: message \"$err\" does not match \"$re\""
	echo "$what: $err"
}

# victim_ok [PID]: alive, not left stopped, not left traced (default VPID).
victim_ok() {
	local pid=${1:-$VPID} st
	kill -0 "$pid" 2>/dev/null || fail "process $pid died"
	st=$(awk '{print $3}' "/proc/$pid/stat")
	[ "$st" != "t" ] && [ "$st" != "T" ] || fail "process $pid left stopped ($st)"
	grep -q 'TracerPid:.0$' "/proc/$pid/status" || fail "process $pid left traced"
}

# hooked CMD...: CMD with the write hook preloaded ($KILLHOOK, tests/control/killhook.c:
# ULP_WRITE_LOG, ULP_KILL_AFTER_WRITE, ...), its output in $WORK/hooked.out.
hooked() { env LD_PRELOAD="$KILLHOOK" "$@" >"$WORK/hooked.out" 2>&1; }

# kill_after_write K WHAT CMD...: CMD killed (SIGKILL) right after its K-th write into the
# victim; fails, saying WHAT, unless it was, or when the victim $VPID died of it.
kill_after_write() {
	local k=$1 what=$2
	shift 2
	hooked ULP_KILL_AFTER_WRITE="$k" "$@"
	[ $? = 137 ] || fail "$what: not killed: $(cat "$WORK/hooked.out")"
	kill -0 "$VPID" 2>/dev/null || fail "$what: the victim died"
}
