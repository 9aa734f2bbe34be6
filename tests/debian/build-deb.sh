#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# build-deb.sh SOURCE_ROOT DIR: copies the source tree (what git tracks and what is
# new, never a build directory) to DIR/ulp and runs `dpkg-buildpackage -b -us -uc` there;
# the packages land in DIR, the log in DIR/build.log. Shared by tests/debian's tests.
set -u
src=$1 out=$2
mkdir -p "$out/ulp" || exit 1
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$src" && git ls-files -z -co --exclude-standard | xargs -0 cp --parents -t "$out/ulp") || exit 1
else
	tar -C "$src" --exclude='./build*' --exclude='./obj-*' --exclude='./.git' -c . | tar -C "$out/ulp" -x || exit 1
fi
[ -x "$out/ulp/debian/rules" ] || { echo "no debian/rules in $src"; exit 1; }
(cd "$out/ulp" && nice dpkg-buildpackage -b -us -uc) >"$out/build.log" 2>&1 ||
	{ tail -n 40 "$out/build.log"; echo "dpkg-buildpackage -b -us -uc failed"; exit 1; }
