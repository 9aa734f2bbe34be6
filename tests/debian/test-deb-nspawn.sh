#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The Debian packages installed with dpkg on Debian 12 under a real systemd: a minimal
# root (debootstrap --variant=minbase, the cache tests/system/test-nspawn.sh keeps)
# booted with systemd-nspawn. dpkg -i of ulp and ulp-dev; the maintainer scripts enable
# and start ulpd.socket; with ulpd.service stopped, a request through the socket starts
# it again; ulpctl from PATH applies, lists and reverts a patch of a running server,
# whose own output shows each change; ulpd's records carry ULP_PID= in the journal;
# dpkg -r stops the units and removes them with the commands.
#
# Opt-in (ULP_DEB_NSPAWN=1): it builds the packages (about 80 s on a loaded 2-core
# machine) and boots a container, on top of what debian-package and systemd-nspawn
# already check in CI.
#
# Environment: ULP_SOURCE_ROOT, BANK and FIX (the example server and its patch).
# ULP_NSPAWN_CACHE, ULP_DEBIAN_MIRROR as for tests/system/test-nspawn.sh.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
[ "${ULP_DEB_NSPAWN:-0}" = 1 ] ||
	skip "the packages in a booted Debian 12 container: opt-in (ULP_DEB_NSPAWN=1), it builds them and boots a container (2-3 min)"
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, systemd-nspawn)"
for tool in debootstrap systemd-nspawn nsenter flock pgrep dpkg-buildpackage; do
	command -v "$tool" >/dev/null || fail "$tool missing (scripts/setup-deps.sh installs it)"
done
unshare --mount --pid --fork true 2>/dev/null || skip "cannot create mount and pid namespaces here (nested container?)"
start=${EPOCHREALTIME/./}
took() { echo "$(( (${EPOCHREALTIME/./} - start) / 1000000 )) s"; }

"$(dirname "${BASH_SOURCE[0]}")/build-deb.sh" "$ULP_SOURCE_ROOT" "$WORK/debs" || fail "the packages do not build"
ok "built the packages in $(took)"

# ---- the cached root and the boot: tests/system/nspawn.sh ---------------------------------
. "$(dirname "${BASH_SOURCE[0]}")/../system/nspawn.sh"
nspawn_cached_root

# ---- boot ----------------------------------------------------------------------------------
nspawn_pid= leader= machine="ulp-deb-$$"
on_exit() { nspawn_poweroff; }
fail_details() {
	[ -n "$leader" ] && [ -d "/proc/$leader" ] || return 0
	echo "--- the container's journal of ulpd:"
	inside journalctl -u ulpd.service -u ulpd.socket --no-pager -n 30 2>&1
}
nspawn_boot "$WORK/console.log"
ok "booted the container at $(took)"

# ---- dpkg -i: the maintainer scripts enable and start the units ------------------------------
stage=$WORK/stage
install -D -m 0644 -t "$stage/root/debs" "$WORK/debs/ulp_0.1.0_amd64.deb" "$WORK/debs/ulp-dev_0.1.0_amd64.deb"
install -D -m 0755 "$BANK" "$stage/usr/local/lib/ulp-test/bank"
install -D -m 0644 "$FIX" "$stage/usr/local/lib/ulp-test/fix-fee.so"
tar -C "$stage" -c --owner=0 --group=0 . | inside tar -C / -x --no-overwrite-dir --keep-directory-symlink ||
	fail "cannot copy into the container"
out=$(inside dpkg -i /root/debs/ulp_0.1.0_amd64.deb /root/debs/ulp-dev_0.1.0_amd64.deb 2>&1) || fail "dpkg -i: $out"
for u in ulpd.socket ulpd.service; do
	[ "$(inside systemctl is-enabled "$u" 2>&1)" = enabled ] || fail "$u is not enabled after dpkg -i"
done
[ "$(inside systemctl is-active ulpd.socket)" = active ] || fail "ulpd.socket is not listening after dpkg -i"
[ "$(inside systemctl show -p ExecStart --value ulpd.service | grep -o 'path=[^ ;]*')" = path=/usr/libexec/ulpd ] ||
	fail "ulpd.service does not run /usr/libexec/ulpd"
ok "dpkg -i: ulpd.socket and ulpd.service enabled, the socket listening"

inside systemctl stop ulpd.service
[ "$(inside systemctl is-active ulpd.service || true)" = inactive ] || fail "ulpd.service did not stop"
inside systemd-run --quiet --unit=ulp-bank.service /usr/local/lib/ulp-test/bank 2
fee() { inside journalctl -u ulp-bank.service -o cat --no-pager -n 1 2>/dev/null |
	sed -n 's/^fee for a 1000.00 transfer: \([0-9.]*\) .*/\1/p'; }
fee_is() { [ "$(fee)" = "$1" ]; }
wait_for 60 fee_is 100.00 || fail "the server does not report a fee of 100.00: '$(fee)'"
bank=$(inside systemctl show -p MainPID --value ulp-bank.service)

# ---- ulpctl from PATH, through the socket-activated ulpd ----------------------------------
out=$(inside sh -c "command -v ulpctl") || fail "ulpctl is not on PATH"
[ "$out" = /usr/bin/ulpctl ] || fail "ulpctl on PATH is $out"
out=$(inside ulpctl apply -p "$bank" /usr/local/lib/ulp-test/fix-fee.so 2>&1) || fail "apply: $out"
wait_for 60 fee_is 10.00 || fail "the server does not see the patch: '$(fee)'"
[ "$(inside systemctl is-active ulpd.service)" = active ] || fail "the request did not start ulpd.service"
ok "ulpctl apply through the socket started ulpd.service; the server reports $(fee)"
out=$(inside ulpctl status -p "$bank" 2>&1) || fail "status: $out"
grep -q 'fix-fee: patched' <<<"$out" || fail "status does not list fix-fee patched: $out"
out=$(inside ulpctl revert -p "$bank" fix-fee 2>&1) || fail "revert: $out"
wait_for 60 fee_is 100.00 || fail "the server does not see the revert: '$(fee)'"
recs=$(inside journalctl -o cat --no-pager ULP_PID="$bank" ULP_PATCH=fix-fee)
for want in "apply of fix-fee in pid $bank done:" "revert of fix-fee in pid $bank done:"; do
	grep -qF "$want" <<<"$recs" || fail "no '$want' record with ULP_PID=$bank in the journal: $recs"
done
ok "status listed it, revert took it back, the journal has ULP_PID=$bank records"

# ---- dpkg -r: the units stopped and gone -------------------------------------------------------
out=$(inside dpkg -r ulp-dev ulp 2>&1) || fail "dpkg -r: $out"
for u in ulpd.socket ulpd.service; do
	st=$(inside systemctl is-active "$u" || true)
	[ "$st" = inactive ] || fail "$u is $st after dpkg -r"
done
inside systemctl cat ulpd.service >/dev/null 2>&1 && fail "ulpd.service is still known after dpkg -r"
inside sh -c "command -v ulpctl" && fail "ulpctl is still on PATH after dpkg -r"
ok "dpkg -r stopped ulpd.socket and ulpd.service and removed them; all in $(took)"
