#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The demo, the scripts and the tests write only under a fresh temporary directory (or,
# for run-tests, its own build directories): no
# fixed name under /tmp (a mkstemp/mkdtemp template ending in XXXXXX is unique; the
# maps parser's fixture only parses such a string). And Python's caches stay out of the
# repository: ignored, none tracked. And no pipeline ends in grep -q: it exits at its first
# match, the writer before it can then die of SIGPIPE, and under pipefail a match reads as
# a failure (on a loaded machine, now and then). Here-strings or grep ... >/dev/null.
#
# Environment: ULP_SOURCE_ROOT.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ULP_SOURCE_ROOT" || fail "no source tree at $ULP_SOURCE_ROOT"

fixed=$(grep -rnE '/tmp/[A-Za-z0-9_.@-]' scripts tests bench examples .ci 2>/dev/null |
	grep -v 'XXXXXX' | grep -v '^tests/elf/test-maps\.c:' | grep -v '^tests/install/test-hygiene\.sh:')
[ -z "$fixed" ] || fail "fixed names under /tmp (use mktemp -d):
$fixed"
ok "no fixed /tmp name in scripts/, tests/, bench/, examples/, .ci/"

# run-tests and the demo write their logs into a build directory or a temporary one: every
# redirection of output goes to "$dir/...", "$tmp/...", "$log" or /dev/null.
bad=$(grep -noE '(^|[^0-9<])[0-9]?>>? *[^ &)]+' scripts/run-tests scripts/demo |
	grep -vE '(>|> *)("\$dir/|"\$tmp/|"\$log"|/dev/null)' | grep -vE ':[^:]*> 10$')
[ -z "$bad" ] || fail "scripts/run-tests or scripts/demo writes outside its directories:
$bad"
ok "run-tests logs into its build directories, the demo into its temporary directory"

grep -qx '__pycache__/' .gitignore || fail ".gitignore does not ignore __pycache__/"
if git rev-parse --git-dir >/dev/null 2>&1; then
	git check-ignore -q tests/control/__pycache__/x.cpython-311.pyc || fail "git does not ignore a __pycache__ file"
	tracked=$(git ls-files '*.pyc' '*/__pycache__/*')
	[ -z "$tracked" ] || fail "Python caches are tracked: $tracked"
	for f in obj-x86_64-linux-gnu/x debian/tmp/x debian/ulp/x debian/files debian/.debhelper/x; do
		git check-ignore -q "$f" || fail "dpkg-buildpackage's output $f is not ignored"
	done
fi
ok ".gitignore keeps __pycache__ and the package build's output out; no cache tracked"

quitters=$(grep -rnE '\| *grep +(-[A-Za-z]+ +)*-[A-Za-z]*q' scripts tests bench examples .ci 2>/dev/null |
	grep -v '^tests/install/test-hygiene\.sh:')
[ -z "$quitters" ] || fail "pipelines that end in grep -q (SIGPIPE under pipefail):
$quitters"
ok "no pipeline ends in grep -q"
