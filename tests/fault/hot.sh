# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# What the tests on tests/core's hot victim share (its lines: "v1=N v2=N wrong=N" every
# 20 ms), sourced after lib.sh.

# count KEY: KEY's value in the victim's last line
count() { field "$1" "$(grep -E '^v1=' "$LOG" | tail -n 1)"; }
count_above() { [ "$(count "$1")" -gt "$2" ]; }
# rises KEY: KEY grows within 5 s (times SLOW): 16 spinning threads may all wait longer
# than the victim's 20 ms between lines on a loaded machine while its printer, a
# sleeper, runs
rises() {
	local a
	wait_line '^v1=' 5 "$(lines)" || fail "the victim stopped printing"
	a=$(count "$1")
	wait_for 5 count_above "$1" "$a"
}
# stays KEY: KEY stays the same over two more lines
stays() {
	local a from
	from=$(lines)
	wait_line '^v1=' 5 "$from" || fail "the victim stopped printing"
	a=$(count "$1")
	wait_line '^v1=' 5 "$((from + 3))" || fail "the victim stopped printing"
	[ "$(count "$1")" = "$a" ]
}
