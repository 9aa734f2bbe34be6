#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A process whose executable lies on an overlayfs with layers on different file systems
# (a container's root: the image below, a tmpfs above) is patched: there stat() reports
# the layer's device and /proc/PID/maps the overlay's, and the main executable must be
# recognised all the same.
set -eu
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (mounts an overlayfs)"; exit 77; }
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
tmp=$WORK
pid=
# The victim runs from the overlay: it goes first, then the mounts, then WORK.
on_exit() {
        [ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }
        umount "$tmp/merged" 2>/dev/null || true
        umount "$tmp/upperfs" 2>/dev/null || true
}

mkdir "$tmp/lower" "$tmp/upperfs" "$tmp/merged"
cp "$BANK" "$tmp/lower/bank"
mount -t tmpfs tmpfs "$tmp/upperfs" || { echo "SKIP: cannot mount a tmpfs here"; exit 77; }
mkdir "$tmp/upperfs/upper" "$tmp/upperfs/work"
mount -t overlay overlay -o "lowerdir=$tmp/lower,upperdir=$tmp/upperfs/upper,workdir=$tmp/upperfs/work" \
        "$tmp/merged" || { echo "SKIP: cannot mount an overlayfs here"; exit 77; }

"$tmp/merged/bank" 1 >"$LOG" 2>&1 &
pid=$!
wait_for 30 bank_shows 100.00 || fail "the victim does not report"
mapdev=$(awk -v p="$tmp/merged/bank" '$6 == p { print $4; exit }' "/proc/$pid/maps")
statdev=$(stat -L -c '%Hd:%Ld' "/proc/$pid/exe")
echo "the executable's device: $mapdev in /proc/$pid/maps, $statdev by stat()"
out=$("$ULPCTL" --direct apply -p "$pid" "$FIX" 2>&1) || fail "apply: $out"
wait_for 30 bank_shows 10.00 || fail "the victim does not see the fix"
echo "ok: patched the executable on overlayfs; the victim says: $(tail -n 1 "$LOG")"
