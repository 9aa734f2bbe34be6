# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# What the tests of late objects share, sourced after `set -uo pipefail`: tests/lib.sh,
# the victim's libraries on the path, the patch that waits for liblatehold.so, and
# helpers over the victim's log (env from meson: ULPCTL, LATE_VICTIM, LATE_DIR,
# VICTIMS_DIR).
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=
export LD_LIBRARY_PATH=$VICTIMS_DIR:$LATE_DIR
PATCH=$LATE_DIR/late-patch-hold.so

ulpctl() { "$ULPCTL" --direct "$@"; }
# value_in KEY: KEY's value in the victim's last status line
value_in() { grep -v '^cb: \|^vfork' "$LOG" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# shows KEY VALUE [SECONDS]: the victim comes to print KEY=VALUE
shows() { wait_for "${3:-5}" eval "[ \"\$(value_in $1)\" = $2 ]"; }
# the callbacks the victim ran, in order; how many times it ran callback $1
cbs() { grep '^cb: ' "$LOG" | sed 's/^cb: //' | tr '\n' ' '; }
count() { grep -cx "cb: $1" "$LOG"; }
# start_loaded [ENV...]: the victim (with ENV), patched, liblatehold.so loaded.
start_loaded() {
	: >"$LOG"
	env "$@" "$LATE_VICTIM" >"$LOG" 2>&1 &
	VPID=$!
	wait_for 5 grep -q '^base=1 hold=-1' "$LOG" || fail "victim did not start"
	ulpctl apply -p "$VPID" "$PATCH" >/dev/null 2>&1 || fail "apply failed"
	shows base 2 || fail "base_value not patched"
	kill -HUP "$VPID"
	shows loads 1 || fail "liblatehold.so not loaded"
}
stop_victim() { kill -9 "$VPID" 2>/dev/null; wait "$VPID" 2>/dev/null; VPID=; }
