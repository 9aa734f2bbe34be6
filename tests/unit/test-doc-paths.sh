#!/usr/bin/env bash
# Every source file docs/ names exists: a path that starts with one of the tree's
# top-level folders (patcher/transition-entry.c) at that path, a shorter one
# (transition-entry.c, x86_64/relocate.c) as the end of some file's path. A file renamed
# or split without its docs fails here. The first column of glossary.md's rename map
# names old files on purpose and is left out; so are the names below, which are not
# files of the tree.
# Usage: test-doc-paths.sh SOURCE_ROOT
set -uo pipefail

root=${1:?usage: test-doc-paths.sh SOURCE_ROOT}
cd "$root" || exit 1

# an example patch, a file name pattern, the kernel's source, an install location
not_ours=' fix.c fuzz-NAME.c kernel/livepatch/transition.c includedir/ulp/patch.h '

files=$(find . -path ./.git -prune -o -path './build*' -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print |
	sed 's|^\./||')
tops=$(find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' ! -name 'build*' -printf '%f\n')

# doc_text FILE: the text of FILE, without the old names of glossary.md's rename map
doc_text() {
	case $1 in
	*/glossary.md) awk -F'|' '/^## / { map = /^## Rename map/ } map && NF > 3 { $2 = "" } { print }' "$1" ;;
	*) cat "$1" ;;
	esac
}

bad=0 n=0
for doc in docs/*.md; do
	for name in $(doc_text "$doc" | grep -oE '[A-Za-z0-9_./-]+\.[ch]\b' | sort -u); do
		name=${name#./}
		case $not_ours in *" $name "*) continue ;; esac
		n=$((n + 1))
		if grep -qxF "${name%%/*}" <<<"$tops" && [ "${name#*/}" != "$name" ]; then
			[ -f "$name" ] && continue
		elif grep -qE "(^|/)${name//./\\.}\$" <<<"$files"; then
			continue
		fi
		echo "$doc names $name, which is not in the tree"
		bad=1
	done
done
echo "$n file names checked in docs/"
exit $bad
