#!/usr/bin/env bash
# A patch-load record the process wrote itself (docs/fault-tolerance.md, "A patch load cut
# short"; docs/control-block.md, "Trust": the owner of a process can rewrite its block):
# the next operation takes back only what is ulp's load. The victim's block names a load
# of a driver that is gone, whose fd is the victim's stdout (its log) and whose range is
# the block's own mapping: open with the inode of the log (fd), open with the inode of
# the block's memfd (map), or being created (creating). The revert that meets it must
# close nothing and unmap nothing: the victim keeps writing its log, keeps its block
# (its stubs read the block's thread table), runs the original after the revert, and
# the record is gone from the header. Before, a range was taken as the load's on the
# inode alone: the revert unmapped the control block ("map").
# Usage: test-memfd-forged.sh  (env from meson: ULPCTL, VICTIM, PATCH)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
VPID=
T=$((30 * SLOW))

ulpctl() { "$ULPCTL" --direct "$@"; }
runs() { { fresh && rises "$1" 5; } && steady "$2" && [ "$(now mixed)" = 0 ]; }
block_maps() { grep -c 'memfd:ulp-control' "/proc/$VPID/maps"; }

# forge MODE: writes the record into the victim's block (ControlHeader's load_* fields
# from offset 248: tests/control/test-control.c, TEST(load), checks the layout), of a
# driver that is gone (the victim's pid, another start time), fd 1, ulp-patch:forged.
forge() {
	python3 - "$VPID" "$1" <<'PY'
import os, struct, sys
pid, mode = int(sys.argv[1]), sys.argv[2]
start = end = ino = None
with open(f"/proc/{pid}/maps") as f:
    for line in f:
        v = line.split()
        if len(v) >= 6 and v[5] == "/memfd:ulp-control" and int(v[2], 16) == 0:
            start, end = (int(x, 16) for x in v[0].split("-"))
            ino = int(v[4])
if start is None:
    sys.exit(f"process {pid} has no control block")
state, ino = {"fd": (2, os.stat(f"/proc/{pid}/fd/1").st_ino), "map": (2, ino), "creating": (1, 0)}[mode]
rec = struct.pack("<IiQiIQQQ", state, pid, 1, 1, 0, ino, start, end - start)
with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
    mem.seek(start + 248)
    mem.write(rec + b"ulp-patch:forged".ljust(192, b"\0"))
PY
}
# The record as the block holds it now: state, pid, name.
record() {
	python3 - "$VPID" <<'PY'
import struct, sys
pid = int(sys.argv[1])
with open(f"/proc/{pid}/maps") as f:
    start = next(int(v[0].split("-")[0], 16) for v in map(str.split, f)
                 if len(v) >= 6 and v[5] == "/memfd:ulp-control" and int(v[2], 16) == 0)
with open(f"/proc/{pid}/mem", "rb") as mem:
    mem.seek(start + 248)
    b = mem.read(240)
state, lpid = struct.unpack_from("<Ii", b)
print(state, lpid, b[48:].rstrip(b"\0").decode())
PY
}

"$VICTIM" -n 4 >"$LOG" 2>&1 &
VPID=$!
wait_for 10 grep -qs '^v1=' "$LOG" || fail "victim did not start"

for mode in fd map creating; do
	out=$(ulpctl apply --timeout $T -p "$VPID" "$PATCH" 2>&1) || fail "$mode: apply: $out"
	runs v2 v1 || fail "$mode: the patch does not run"
	forge $mode || fail "$mode: cannot write the record"
	state=2
	[ $mode = creating ] && state=1
	[ "$(record)" = "$state $VPID ulp-patch:forged" ] || fail "$mode: the record reads $(record)"
	out=$(ulpctl revert --timeout $T -p "$VPID" fault 2>&1) || fail "$mode: revert: $out"
	victim_ok
	[ "$(block_maps)" -ge 1 ] || fail "$mode: the control block was unmapped"
	[ -e "/proc/$VPID/fd/1" ] || fail "$mode: the victim's stdout was closed"
	runs v1 v2 || fail "$mode: not on the original after the revert (or its log stopped)"
	[ "$(record)" = "0 0 " ] || fail "$mode: the record is still there: $(record)"
	out=$(ulpctl status -p "$VPID" 2>&1) || fail "$mode: status: $out"
	ok "$mode: a forged load record took nothing of the victim's and was cleared"
done
echo "PASS"
