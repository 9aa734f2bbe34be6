#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The CI flow of ulp-build (docs/ulp-build.md), on app/ (version 1) and fix.diff:
#   1. build version 1 and start it, as a test environment would;
#   2. make a live patch from the fix with ulp-build;
#   3. apply it to the running version 1, which keeps its state (its served count);
#   4. run version 2's tests against the live process;
#   5. revert, and check version 1 is back.
# Usage: ci.sh   (ULPCTL and ULP_BUILD name the tools when they are not on PATH;
# ulpctl --direct needs the right to trace the process, as root has.)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ULPCTL=${ULPCTL:-ulpctl}
ULP_BUILD=${ULP_BUILD:-ulp-build}
work=$(mktemp -d)
pid=
cleanup() {
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# 1. version 1, running
cp -r "$here/app" "$work/v1"
make -s -C "$work/v1"
mkfifo "$work/req" "$work/rep"
"$work/v1/pricer" "$work/req" "$work/rep" &
pid=$!
exec 3>"$work/req" 4<"$work/rep"
echo 5 >&3
read -r -t 10 before <&4
echo "version 1 answers: $before"

# 2. the patch, from the clean tree and the fix
"$ULP_BUILD" --source "$here/app" --diff "$here/fix.diff" --binary "$work/v1/pricer" -o "$work/fix.so"

# 3. applied to the running version 1
"$ULPCTL" --direct apply -p "$pid" "$work/fix.so"

# 4. version 2's tests, against the live process
"$here/test-v2.sh" "$work/req" "$work/rep"

# 5. back to version 1
"$ULPCTL" --direct revert -p "$pid" fix
echo 5 >&3
read -r -t 10 after <&4
echo "after the revert: $after"
[ "$(awk '{ print $4 }' <<<"$after")" = "$(awk '{ print $4 }' <<<"$before")" ] || { echo "FAIL: version 1 is not back"; exit 1; }
echo "ci: the fix passed version 2's tests on the live process, and was taken back"
