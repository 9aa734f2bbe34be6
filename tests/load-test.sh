#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The integration suite under load, as on a busy production machine: RUNS (default 3)
# runs in a row of one copy of the suite while two CPU hogs per core spin and, at the
# same time, a second copy of the suite runs its RUNS from another checkout. Both copies
# are fresh clones of this repository's HEAD commit (uncommitted changes are not
# tested) in a scratch directory, each with its own -Dwerror=true build. Prints the
# pass/fail/skip counts of every run and the failed tests' names; exits 0 when no run
# failed. The hogs, the checkouts and their builds are removed at the end, whatever
# happens.
#
# Not part of CI (it takes long): run it by hand, e.g. nice tests/load-test.sh.
# Failed runs' test logs are kept in build-load-test/.
# Usage: tests/load-test.sh [RUNS]
set -uo pipefail
RUNS=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$root" rev-parse HEAD) || exit 1
# the system's python3, not a version manager's slow shim (as scripts/run-tests)
PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v '/shims$' | paste -sd: -)
export PATH
ncpu=$(nproc)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ulp-load-test.XXXXXX")
# the tests run programs as an unprivileged uid, which must read the checkouts
chmod 755 "$scratch"
hogs=()
copies=()

cleanup() {
	local p
	for p in "${hogs[@]}"; do kill "$p" 2>/dev/null; done
	# each copy runs in a process group of its own: meson test stops its running
	# test on SIGINT (a second one ends it), what still runs after that is killed
	for p in "${copies[@]}"; do kill -INT -- "-$p" 2>/dev/null; done
	sleep 2
	for p in "${copies[@]}"; do kill -INT -- "-$p" 2>/dev/null; done
	sleep 3
	for p in "${copies[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# checkout NAME: a clone of HEAD's commit, built, in $scratch/NAME
checkout() {
	local dir=$scratch/$1
	git clone -q --no-checkout "$root" "$dir" && git -C "$dir" checkout -q "$commit" || return 1
	meson setup "$dir/build" "$dir" -Dwerror=true >"$scratch/$1.setup.log" 2>&1 &&
		meson compile -C "$dir/build" >"$scratch/$1.build.log" 2>&1 ||
		{ echo "$1: build failed:"; tail -20 "$scratch/$1.build.log" "$scratch/$1.setup.log"; return 1; }
}

# slowdown: as scripts/run-tests, runnable tasks per core rounded up, up to 10, but at
# least 4: the hogs (2 per core) and the second copy are 3 or more runnable tasks per
# core from the start, which the 1-minute load average shows only a minute later (run 1
# got 1 at a load climbing past 29)
slowdown() {
	awk -v n="$ncpu" '{ s = int($1 / n + 0.999); print (s < 4 ? 4 : (s > 10 ? 10 : s)) }' /proc/loadavg
}

# run NAME I: one run of NAME's integration suite; prints its counts
run() {
	local dir=$scratch/$1 slow t0 t1 counts
	slow=${ULP_TEST_SLOWDOWN:-$(slowdown)}
	t0=$(date +%s)
	ULP_TEST_SLOWDOWN=$slow meson test -C "$dir/build" --suite integration \
		--timeout-multiplier $((2 * slow)) >"$scratch/$1.run$2.log" 2>&1
	t1=$(date +%s)
	counts=$(python3 - "$dir/build/meson-logs/testlog.json" <<'PY'
import json, sys
ok, failed, skipped = 0, [], 0
try:
    for line in open(sys.argv[1]):
        t = json.loads(line)
        r = t.get("result")
        if r == "OK":
            ok += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed.append(f"{t['name']} ({r})")
except OSError:
    failed.append("no test log")
print(f"{ok} passed, {len(failed)} failed, {skipped} skipped" + (": " + ", ".join(failed) if failed else ""))
PY
)
	echo "$1 run $2: $counts  [$((t1 - t0)) s, load $(cut -d' ' -f1 /proc/loadavg), ULP_TEST_SLOWDOWN=$slow]"
	# keep the failures' logs: the scratch directory goes away
	case $counts in
	*" 0 failed"*) ;;
	*) mkdir -p "$root/build-load-test" &&
		cp "$dir/build/meson-logs/testlog.txt" "$root/build-load-test/$1.run$2.testlog.txt" ;;
	esac
}

echo "load test of $commit: $RUNS runs, $((2 * ncpu)) CPU hogs on $ncpu cores, a second copy alongside"
checkout main && checkout other || exit 1

for ((i = 0; i < 2 * ncpu; i++)); do
	( while :; do :; done ) &
	hogs+=($!)
done

# job control on: each copy gets a process group of its own, which cleanup can end
set -m
for c in main other; do
	( for ((i = 1; i <= RUNS; i++)); do run "$c" "$i"; done | tee "$scratch/$c.out" ) &
	copies+=($!)
done
set +m
wait "${copies[@]}" 2>/dev/null
copies=()

for p in "${hogs[@]}"; do kill "$p" 2>/dev/null; done
hogs=()
! grep -h -v ' 0 failed' "$scratch/main.out" "$scratch/other.out" | grep . >/dev/null
