#!/usr/bin/env bash
# Every source file docs/ names exists: a path that starts with one of the tree's
# top-level folders (patcher/transition-entry.c) at that path, a shorter one
# (transition-entry.c, x86_64/relocate.c) as the end of some file's path. A file renamed
# or split without its docs fails here. The first column of glossary.md's rename map
# names old files on purpose and is left out; so are the names below, which are not
# files of the tree. One awk for all, so that a loaded machine does not make it slow.
# Usage: test-doc-paths.sh SOURCE_ROOT
set -uo pipefail

root=${1:?usage: test-doc-paths.sh SOURCE_ROOT}
cd "$root" || exit 1

# an example patch, a file name pattern, the kernel's source, an install location
not_ours='fix.c fuzz-NAME.c kernel/livepatch/transition.c includedir/ulp/patch.h'

tops=$(find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' ! -name 'build*' -printf '%f ')
find . -path ./.git -prune -o -path './build*' -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print |
	sed 's|^\./||' |
	awk -v tops="$tops" -v not_ours="$not_ours" '
	BEGIN {
		split(tops, t, " "); for (i in t) top[t[i]] = 1
		split(not_ours, t, " "); for (i in t) skip[t[i]] = 1
	}
	# the tree'"'"'s files: each by its path and by every shorter end of it
	NR == FNR {
		path[$0] = 1
		s = $0
		for (;;) { tail[s] = 1; if (!(i = index(s, "/"))) break; s = substr(s, i + 1) }
		next
	}
	FNR == 1 { map = 0 }
	/^## / { map = FILENAME ~ /glossary\.md$/ && /^## Rename map/ }
	{
		line = $0
		if (map && (nc = split(line, cell, "|")) > 3) {
			line = ""
			for (i = 3; i <= nc; i++) line = line "|" cell[i]
		}
		while (match(line, /[A-Za-z0-9_.\/-]+\.[ch]/)) {
			name = substr(line, RSTART, RLENGTH)
			after = substr(line, RSTART + RLENGTH, 1)
			line = substr(line, RSTART + RLENGTH)
			if (after ~ /[A-Za-z0-9_]/) continue
			sub(/^\.\//, "", name)
			if (name in skip || seen[FILENAME, name]++) continue
			n++
			first = name; sub(/\/.*/, "", first)
			if (first in top && first != name) ok = name in path
			else ok = name in tail
			if (!ok) { print FILENAME " names " name ", which is not in the tree"; bad = 1 }
		}
	}
	END { print n " file names checked in docs/"; exit bad }
	' - docs/*.md
