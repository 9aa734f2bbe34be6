#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `meson install --destdir` lays ulp out as a Debian/systemd tool (docs/install.md):
# ulpctl in bindir, ulpd in libexecdir and named by the installed unit's ExecStart, the
# units, the headers, ulp.pc, three man pages that lint clean, the bash completion. Then
# what was installed, and only that, is used: a patch built with the installed ulp.pc
# (the source tree's include/ is not on its command line) is applied to a real victim
# by the installed ulpd and reverted by the installed ulpctl --direct (its module found
# relative to itself), and the completion, sourced into bash, completes verbs, options
# and the names of the patches a -p process carries.
#
# Environment (tests/install/meson.build): ULP_BUILD_ROOT, ULP_SOURCE_ROOT, BANK, PREFIX, BINDIR, LIBDIR,
# LIBEXECDIR, INCLUDEDIR, MANDIR, DATADIR (as configured; the last five relative to
# PREFIX or absolute).
set -u
# meson test points LD_LIBRARY_PATH into the build tree: the installed ulpctl must find
# its module on its own.
unset LD_LIBRARY_PATH
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
[ "$(id -u)" = 0 ] || skip "needs root (patches a victim through ulpd, which needs CAP_SYS_PTRACE)"
for tool in mandoc man pkg-config cc; do
	command -v "$tool" >/dev/null || fail "$tool missing (scripts/setup-deps.sh installs it)"
done

dest=$WORK/root
abs() { case "$1" in /*) echo "$1" ;; *) echo "$PREFIX/$1" ;; esac; }
bindir=$dest$(abs "$BINDIR"); libdir=$dest$(abs "$LIBDIR"); libexecdir=$(abs "$LIBEXECDIR")
includedir=$dest$(abs "$INCLUDEDIR"); mandir=$dest$(abs "$MANDIR"); datadir=$dest$(abs "$DATADIR")

meson install -C "$ULP_BUILD_ROOT" --destdir "$dest" --no-rebuild >"$WORK/install.log" 2>&1 ||
	{ cat "$WORK/install.log"; fail "meson install --destdir failed"; }

# ---- the layout ------------------------------------------------------------------------
for f in "$bindir/ulpctl" "$dest$libexecdir/ulpd"; do
	[ -x "$f" ] || fail "not installed: ${f#"$dest"}"
done
# The patch author's headers, and no header of a library that is not installed.
[ "$(cd "$includedir/ulp" && ls)" = "patch.h
shadow.h" ] || fail "$includedir/ulp holds $(ls "$includedir/ulp" | tr '\n' ' '), not patch.h and shadow.h alone"
for f in "$libdir/ulp/ulpctl-direct.so" \
	"$bindir/ulp-build" "$dest$libexecdir/ulp/ulp-build-diff" "$dest$libexecdir/ulp/ulp-build-cc" "$dest$libexecdir/ulp/ulp-build-c++" \
	"$libdir/pkgconfig/ulp.pc" "$mandir/man1/ulpctl.1" "$mandir/man1/ulp-build.1" "$mandir/man8/ulpd.8" \
	"$mandir/man7/ulp-patch.7" "$datadir/bash-completion/completions/ulpctl"; do
	[ -f "$f" ] || fail "not installed: ${f#"$dest"}"
done
service=$(find "$dest" -path '*/systemd/system/ulpd.service')
socket=$(find "$dest" -path '*/systemd/system/ulpd.socket')
[ -n "$service" ] && [ -n "$socket" ] || fail "the units are not installed: $(cd "$dest" && find . -name 'ulpd.s*')"
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$service")
[ "$exec_start" = "$libexecdir/ulpd" ] || fail "ulpd.service runs '$exec_start', meson installed $libexecdir/ulpd"
grep -qx 'Documentation=man:ulpd(8)' "$socket" || fail "ulpd.socket has no Documentation=man:ulpd(8)"
# Nothing installed outside the prefix; the units too when the prefix is not /usr
# (systemd reads /usr/local/lib/systemd/system).
stray=$(cd "$dest" && find . -type f | sed 's/^\.//' | grep -v "^$PREFIX/")
[ "$PREFIX" = /usr ] && stray=$(grep -v '^/lib/systemd/system/ulpd\.s' <<<"$stray")
[ -z "$stray" ] || fail "installed outside $PREFIX: $stray"
ok "layout: ulpctl in ${bindir#"$dest"}, ulpd in $libexecdir (the unit's ExecStart), units, headers, ulp.pc, man pages, completion"

# ---- the man pages: no warning from either formatter, no placeholder left ----------------
for page in "$mandir"/man*/*; do
	out=$(mandoc -Tlint -W warning "$page" 2>&1) || fail "mandoc -Tlint ${page##*/}: $out"
	[ -z "$out" ] || fail "mandoc -Tlint ${page##*/}: $out"
	out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null)
	[ -z "$out" ] || fail "man --warnings ${page##*/}: $out"
	! grep -n '@[A-Z]*@' "$page" || fail "${page##*/} keeps a placeholder"
done
grep -qF "$libexecdir/ulpd" "$mandir/man8/ulpd.8" || fail "ulpd(8) does not say where ulpd is"
# Each man: link of the units is a page installed here.
for ref in $(sed -n 's/^Documentation=//p' "$service" "$socket"); do
	case "$ref" in
	man:*) page=${ref#man:}; sect=${page##*(}; sect=${sect%)}; page=${page%(*}
		[ -f "$mandir/man$sect/$page.$sect" ] || fail "the units' Documentation=$ref is not installed" ;;
	esac
done
ok "man pages ulpctl(1), ulp-build(1), ulpd(8), ulp-patch(7) lint clean (mandoc -Tlint, man --warnings); the units' man: links resolve"

# ---- a patch built with the installed ulp.pc ---------------------------------------------
cat >"$WORK/fix.c" <<'PATCH'
#include <ulp/patch.h>

ULP_PATCH_INFO("fix-fee-pc", "built with pkg-config --cflags ulp");

long fee_for_v2(long cents);
long fee_for_v2(long cents) {
	long fee = cents / 100;
	return fee < 50 ? 50 : fee;
}

ULP_FUNC(ULP_MAIN, "fee_for", fee_for_v2);
PATCH
cflags=$(PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=$libdir/pkgconfig PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 \
	pkg-config --cflags ulp) || fail "pkg-config does not find the installed ulp.pc"
cflags=$(echo $cflags)  # pkg-config ends the flags with a space
[ "$cflags" = "-I$includedir" ] || fail "pkg-config --cflags ulp: '$cflags', want '-I$includedir'"
# shellcheck disable=SC2086 # the flags are words
(cd "$WORK" && cc -shared -fPIC -O2 $cflags fix.c -o fix.so) || fail "the patch does not build with the installed ulp.pc"
ok "built a patch with cc -shared -fPIC -O2 \$(pkg-config --cflags ulp): $cflags"

ulpctl=$bindir/ulpctl
out=$("$ulpctl" info "$WORK/fix.so" 2>&1) || fail "the installed ulpctl info: $out"
grep -q 'fix-fee-pc' <<<"$out" || fail "info does not name the patch: $out"
ok "the installed ulpctl loads its module relative to itself (info)"

# ---- applied by the installed ulpd, reverted by the installed ulpctl --direct ------------
export ULP_SOCKET=$WORK/ulpd.sock
"$dest$libexecdir/ulpd" --no-recover --patch-dir "" --socket "$ULP_SOCKET" --state-dir "$WORK/state" >"$WORK/ulpd.log" 2>&1 &
PIDS+=($!)
wait_for 10 test -S "$ULP_SOCKET" || { cat "$WORK/ulpd.log"; fail "the installed ulpd did not start"; }

"$BANK" 2 >"$LOG" 2>&1 &
VPID=$!
wait_for 30 bank_shows 100.00 || fail "the victim does not report"
out=$("$ulpctl" apply -p "$VPID" "$WORK/fix.so" 2>&1) || fail "apply through the installed ulpd: $out"
wait_for 30 bank_shows 10.00 || fail "the victim does not see the patch"
ok "the installed ulpd applied it; the victim says: $(tail -n 1 "$LOG")"

# ---- the completion, sourced in bash ------------------------------------------------------
# complete LINE: what the completion offers for LINE (completing its last word, which
# is empty when LINE ends in a space), one per line, sorted. With bash-completion's
# helpers when $2 is "full", else in a bare bash.
complete_line() {
	local line=$1 mode=$2
	bash --norc --noprofile -c '
		[ "$1" = full ] && . /usr/share/bash-completion/bash_completion
		. "$2"
		read -r -a COMP_WORDS <<<"$3"
		[ "${3: -1}" = " " ] && COMP_WORDS+=("")
		COMP_WORDS[0]=$4
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMP_LINE=$4${3#ulpctl}; COMP_POINT=${#COMP_LINE}
		_ulpctl ulpctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
		printf "%s\n" "${COMPREPLY[@]}" | sort' \
		_ "$mode" "$datadir/bash-completion/completions/ulpctl" "$line" "$ulpctl"
}
expect_completion() {  # MODE LINE WANT: the offers, space-separated
	local got
	got=$(complete_line "$2" "$1" | tr '\n' ' ' | sed 's/ $//')
	[ "$got" = "$3" ] || fail "completing '$2' ($1): got '$got', want '$3'"
}
modes=bare
[ -f /usr/share/bash-completion/bash_completion ] && modes="bare full"
mkdir "$WORK/patches" && cp "$WORK/fix.so" "$WORK/patches/" && touch "$WORK/patches/notes.txt"
for m in $modes; do
	expect_completion "$m" "ulpctl " "apply check info revert status"
	expect_completion "$m" "ulpctl --direct re" "revert"
	expect_completion "$m" "ulpctl apply --ti" "--timeout"
	expect_completion "$m" "ulpctl apply --s" "--sticky"
	expect_completion "$m" "ulpctl revert -p $VPID " "fix-fee-pc"
	expect_completion "$m" "ulpctl --direct revert -p $VPID fix" "fix-fee-pc"
	expect_completion "$m" "ulpctl apply -p $VPID $WORK/patches/" "$WORK/patches/fix.so"
	complete_line "ulpctl status -p $VPID" "$m" | grep -x "$VPID" >/dev/null || fail "completing -p $VPID ($m) does not offer it"
done
ok "bash completion ($modes): verbs, options, patch files, the patch names of -p $VPID (through ulpd and --direct)"

out=$("$ulpctl" --direct revert -p "$VPID" fix-fee-pc 2>&1) || fail "revert with the installed ulpctl --direct: $out"
wait_for 30 bank_shows 100.00 || fail "the victim does not see the revert"
victim_ok || fail "the victim was left stopped or traced"
ok "the installed ulpctl --direct reverted it; the victim says: $(tail -n 1 "$LOG")"
