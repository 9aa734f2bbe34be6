#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `dpkg-buildpackage -b -us -uc` builds the Debian packages ulp and ulp-dev from a
# scratch copy of the source tree (docs/install.md), and each .deb holds exactly the
# files it should: ulp the commands, the module, the units (enabled and started by the
# maintainer scripts dh_installsystemd wrote), man pages and completion; ulp-dev the
# headers, ulp.pc and ulp-patch(7); both name the project as their maintainer. The
# unpacked packages are used as they are: a patch builds with ulp-dev's ulp.pc alone and
# ulp's ulpctl reads it. lintian finds nothing.
#
# Environment: ULP_SOURCE_ROOT (the source tree).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
for tool in dpkg-buildpackage dpkg-deb dpkg-architecture dh lintian fakeroot pkg-config; do
	command -v "$tool" >/dev/null || fail "$tool missing (scripts/setup-deps.sh installs it)"
done
[ "$(dpkg-architecture -qDEB_HOST_ARCH)" = amd64 ] || skip "the packages are built for amd64 only"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
start=${EPOCHREALTIME/./}
took() { echo "$(( (${EPOCHREALTIME/./} - start) / 1000000 )) s"; }

# ---- built from a scratch copy of the tree ------------------------------------------------
"$(dirname "${BASH_SOURCE[0]}")/build-deb.sh" "$ULP_SOURCE_ROOT" "$WORK/src" || fail "the packages do not build"
ok "dpkg-buildpackage -b -us -uc built $(cd "$WORK/src" && ls -- *.deb | tr '\n' ' ')in $(took)"

# ---- what each package holds ---------------------------------------------------------------
# files DEB: the non-directory entries of DEB, one path a line, sorted.
files() { dpkg-deb -c "$1" | awk '$1 !~ /^d/ { print $6 }' | sed 's|^\./|/|' | sort; }
expect_files() {  # DEB, then the paths it must hold, exactly
	local deb=$1 got want
	shift
	got=$(files "$deb")
	want=$(printf '%s\n' "$@" | sort)
	[ "$got" = "$want" ] || fail "${deb##*/} holds:
$got
and should hold:
$want
(diff: $(diff <(echo "$want") <(echo "$got") | grep '^[<>]' | tr '\n' ' '))"
}
deb=$WORK/src/ulp_0.1.0_amd64.deb
dev=$WORK/src/ulp-dev_0.1.0_amd64.deb
[ -f "$deb" ] && [ -f "$dev" ] || fail "no ulp_0.1.0_amd64.deb and ulp-dev_0.1.0_amd64.deb: $(ls "$WORK/src")"
expect_files "$deb" /usr/bin/ulpctl /usr/libexec/ulpd "/usr/lib/$multiarch/ulp/ulpctl-direct.so" \
	/usr/bin/ulp-build /usr/libexec/ulp/ulp-build-diff /usr/libexec/ulp/ulp-build-cc /usr/libexec/ulp/ulp-build-c++ \
	/lib/systemd/system/ulpd.service /lib/systemd/system/ulpd.socket \
	/usr/share/man/man1/ulpctl.1.gz /usr/share/man/man1/ulp-build.1.gz /usr/share/man/man8/ulpd.8.gz \
	/usr/share/bash-completion/completions/ulpctl \
	/usr/share/doc/ulp/changelog.gz /usr/share/doc/ulp/copyright
# The patch author's headers; not libulp.h, whose library is not installed (docs/install.md).
expect_files "$dev" /usr/include/ulp/patch.h /usr/include/ulp/shadow.h \
	"/usr/lib/$multiarch/pkgconfig/ulp.pc" /usr/share/man/man7/ulp-patch.7.gz \
	/usr/share/doc/ulp-dev/changelog.gz /usr/share/doc/ulp-dev/copyright
dpkg-deb -c "$deb" | awk '$1 ~ /^d/ { print $6 }' | grep -x './etc/ulp/patches.d/' >/dev/null ||
	fail "ulp does not ship the unit's patch directory /etc/ulp/patches.d"
ok "dpkg-deb -c: ulp and ulp-dev hold exactly the files they should, ulp the directory /etc/ulp/patches.d"

# ---- maintained by the project: the same identity in debian/control and the changelog ------
maint="ulp maintainers <maintainers@ulp.example>"
for d in "$deb" "$dev"; do
	[ "$(dpkg-deb -f "$d" Maintainer)" = "$maint" ] || fail "${d##*/}'s Maintainer: '$(dpkg-deb -f "$d" Maintainer)'"
done
# capstone's x86 decoder is linked in (debian/rules, -Dcapstone=static): no dependency on
# the shared library, and none of its 77,000 relocations
depends=$(dpkg-deb -f "$deb" Depends)
[[ ",${depends// /}," != *,libcapstone4,* ]] || fail "ulp depends on libcapstone4: $depends"
ok "ulp does not depend on libcapstone4 (its x86 decoder is linked in): $depends"
changed_by=$(dpkg-parsechangelog -l "$WORK/src/ulp/debian/changelog" -S Maintainer)
[ "$changed_by" = "$maint" ] || fail "debian/changelog's maintainer: '$changed_by'"
ok "Maintainer: $maint, in both packages and the changelog"

# ---- the units are enabled and started on install, stopped on removal -----------------------
postinst=$(dpkg-deb -I "$deb" postinst) || fail "ulp has no postinst"
prerm=$(dpkg-deb -I "$deb" prerm) || fail "ulp has no prerm"
for u in ulpd.socket ulpd.service; do
	grep -qF "deb-systemd-helper enable '$u'" <<<"$postinst" || fail "the postinst does not enable $u"
	grep -qE "deb-systemd-invoke \\\$_dh_action .*'$u'" <<<"$postinst" || fail "the postinst does not start $u"
	grep -qE "deb-systemd-invoke stop .*'$u'" <<<"$prerm" || fail "the prerm does not stop $u"
done
ok "dh_installsystemd: the postinst enables and starts ulpd.socket and ulpd.service, the prerm stops them"

# ---- the unpacked packages, used as they are -------------------------------------------------
root=$WORK/root
dpkg-deb -x "$deb" "$root" && dpkg-deb -x "$dev" "$root" || fail "cannot unpack the packages"
[ "$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$root/lib/systemd/system/ulpd.service")" = /usr/libexec/ulpd ] ||
	fail "ulpd.service does not run /usr/libexec/ulpd"
cat >"$WORK/fix.c" <<'PATCH'
#include <ulp/patch.h>
ULP_PATCH_INFO("deb-fix", "built with ulp-dev's ulp.pc");
long fee_for_v2(long cents);
long fee_for_v2(long cents) { return cents / 100; }
ULP_FUNC(ULP_MAIN, "fee_for", fee_for_v2);
PATCH
cflags=$(PKG_CONFIG_SYSROOT_DIR=$root PKG_CONFIG_LIBDIR=$root/usr/lib/$multiarch/pkgconfig \
	PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 pkg-config --cflags ulp) || fail "pkg-config does not find ulp-dev's ulp.pc"
cflags=$(echo $cflags)  # pkg-config ends the flags with a space
[ "$cflags" = "-I$root/usr/include" ] || fail "pkg-config --cflags ulp: '$cflags', want '-I$root/usr/include'"
# shellcheck disable=SC2086 # the flags are words
cc -shared -fPIC -O2 $cflags "$WORK/fix.c" -o "$WORK/fix.so" || fail "no patch builds with ulp-dev's ulp.pc ($cflags)"
out=$(env -u LD_LIBRARY_PATH "$root/usr/bin/ulpctl" info "$WORK/fix.so" 2>&1) || fail "the packaged ulpctl info: $out"
grep -q deb-fix <<<"$out" || fail "the packaged ulpctl info does not name the patch: $out"
ok "a patch built with ulp-dev's ulp.pc ($cflags); the packaged ulpctl reads it with its packaged module"

# ---- lintian ---------------------------------------------------------------------------------
(cd "$WORK/src" && nice lintian --fail-on error,warning --tag-display-limit 0 ulp_0.1.0_amd64.changes) \
	>"$WORK/lintian.out" 2>&1
rc=$?
out=$(grep -v '^running with root privileges is not recommended' "$WORK/lintian.out")
[ "$rc" -eq 0 ] && ! grep -qE '^[EW]: ' <<<"$out" || fail "lintian: $out"
ok "lintian: no error or warning${out:+ ($(grep -cE '^[IPX]: ' <<<"$out") notes)}; all in $(took)"
