#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The shipped units under a real systemd: a Debian 12 root (debootstrap, cached) booted
# with systemd-nspawn, ulp installed into it with `meson install`, ulpd.socket enabled.
# A hardened service of another uid (User=, PrivateUsers=, MemoryDenyWriteExecute=,
# SystemCallFilter=@system-service, like Debian's redis-server.service) is patched
# through the socket-activated, hardened ulpd.service and reverted, and the service's own
# output shows each change; an unprivileged user patches their own process and is
# refused another uid's; ulpd's records carry ULP_PID= in the container's journal;
# with CAP_DAC_OVERRIDE taken from the unit, the refusal names /proc/PID/mem and the
# missing capability; a sticky patch reaches the service restarted; a patch dropped into
# the unit's --patch-dir reaches it and its removal reverts it; the watchdog replaces a
# stuck ulpd; and `systemctl stop ulpd` in the middle of a transition leaves it to the
# next ulpd, which finishes it with the victim unharmed (docs/systemd.md).
#
# Nothing of the host's is touched: the container's root is an overlay on a cached,
# never modified tree (--volatile=overlay), its systemd and ulpd live in their own
# namespaces, and the container is powered off (killed after a deadline) on every exit.
#
# Environment: ULP_BUILD_ROOT (the meson build directory), BANK and FIX (the example
# victim and its patch). ULP_NSPAWN_CACHE overrides the cache directory;
# ULP_DEBIAN_MIRROR the archive (default: the host's own Debian mirror).
set -euo pipefail

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; diagnose; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, systemd-nspawn)"
for tool in debootstrap systemd-nspawn nsenter flock pgrep meson; do
        command -v "$tool" >/dev/null || skip "$tool missing (scripts/setup-deps.sh installs it)"
done
[ "$(uname -m)" = x86_64 ] || skip "ulp patches x86-64 processes only"
unshare --mount --pid --fork true 2>/dev/null || skip "cannot create mount and pid namespaces here (nested container?)"
ldd "$ULP_BUILD_ROOT/daemon/ulpd" | grep 'libasan\|libubsan' >/dev/null && skip "a sanitizer build: the container has no sanitizer runtime"

start_ns=$(date +%s%N)
# The waits below stretch on a loaded machine, as tests/lib.sh's do.
SLOW=${ULP_TEST_SLOWDOWN:-$(awk -v n="$(nproc)" '{ s = int($1 / n + 0.999); print (s < 1 ? 1 : (s > 10 ? 10 : s)) }' /proc/loadavg)}
elapsed() { echo "$(( ($(date +%s%N) - start_ns) / 1000000 )) ms"; }
ok() { echo "ok at $(elapsed): $*"; }
. "$(dirname "${BASH_SOURCE[0]}")/nspawn.sh"

# ---- the cached root (tests/system/nspawn.sh) ---------------------------------------
nspawn_cached_root

# ---- what goes into it: ulp as `meson install` lays it out, the victim, its unit ------
tmp=$(mktemp -d)
nspawn_pid=
leader=
machine="ulp-test-$$"

diagnose() {
        [ -n "$leader" ] && [ -d "/proc/$leader" ] || return 0
        echo "--- ulpd's journal in the container:"
        inside journalctl -u ulpd.service -u ulpd.socket --no-pager -n 40 2>&1 || true
        echo "--- the victim's:"
        inside journalctl -u ulp-bank.service --no-pager -n 5 2>&1 || true
        echo "--- the sleeper victim's:"
        inside systemctl status ulp-sleeper.service --no-pager -n 5 2>&1 || true
        echo "--- ulpctl --direct status:"
        inside "$ulpctl" --direct status 2>&1 || true
        local d
        d=$(inside systemctl show -p MainPID --value ulpd.service 2>/dev/null || true)
        if [ -n "$d" ] && [ "$d" != 0 ]; then
                echo "--- ulpd (pid $d) threads:"
                inside sh -c "for t in /proc/$d/task/*; do cat \$t/stat | cut -d' ' -f1-3; cat \$t/stack; done" 2>&1 || true
        fi
}

teardown() {
        nspawn_poweroff
        rm -rf "$tmp"
}
trap teardown EXIT

stage=$tmp/stage
meson install -C "$ULP_BUILD_ROOT" --destdir "$stage" --no-rebuild --quiet >"$tmp/install.log" 2>&1 ||
        { cat "$tmp/install.log"; fail "meson install failed"; }
install -D -m 0755 "$BANK" "$stage/usr/local/lib/ulp-test/bank"
install -D -m 0644 "$FIX" "$stage/usr/local/lib/ulp-test/fix-fee.so"
install -D -m 0755 "$VICTIM" "$stage/usr/local/lib/ulp-test/daemon-victim"
install -D -m 0644 "$PATCH" "$stage/usr/local/lib/ulp-test/daemon-fix.so"
# Sticky patches must name the build they fit.
bank_build_id=$(readelf -n "$BANK" | sed -n 's/.*Build ID: *\([0-9a-f]*\).*/\1/p')
[ -n "$bank_build_id" ] || fail "$BANK has no build-id"
cc -shared -fPIC -O2 -I "$ULP_SOURCE_ROOT/include" -DBANK_BUILD_ID="\"$bank_build_id\"" \
        "$ULP_SOURCE_ROOT/tests/system/fix-fee-pinned.c" -o "$stage/usr/local/lib/ulp-test/fix-fee-pinned.so" ||
        fail "cannot build the pinned patch"
# The unit's patch directory, as the package ships it (debian/ulp.dirs).
mkdir -p "$stage/etc/systemd/system" "$stage/etc/ulp/patches.d"
# The hardening of Debian's redis-server.service that matters to a patcher: another uid
# in a user namespace of its own, no writable and executable memory, a seccomp filter.
cat >"$stage/etc/systemd/system/ulp-bank.service" <<'EOF'
[Unit]
Description=A hardened example server of another uid

[Service]
ExecStart=/usr/local/lib/ulp-test/bank 2
User=ulpbank
PrivateUsers=yes
MemoryDenyWriteExecute=yes
SystemCallFilter=@system-service
SystemCallArchitectures=native
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
RestrictNamespaces=yes
EOF
chmod -R go+rX "$stage"
unit=$(find "$stage" -name ulpd.service)
[ -n "$unit" ] || fail "meson install put no ulpd.service"
ulpd_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
[ -x "$stage$ulpd_path" ] || fail "the unit's ExecStart=$ulpd_path is not what meson installed"
ulpctl_rel=$(cd "$stage" && find . -path '*/bin/ulpctl' | head -n 1)
ulpctl=${ulpctl_rel#.}
[ -n "$ulpctl" ] || fail "meson install put no ulpctl"

# ---- boot --------------------------------------------------------------------------
nspawn_boot "$tmp/console.log"
echo "booted (systemd $(inside systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')) at $(elapsed)"

tar -C "$stage" -c --owner=0 --group=0 . | inside tar -C / -x --no-overwrite-dir --keep-directory-symlink ||
        fail "cannot copy ulp into the container"
inside useradd --system --no-create-home --shell /usr/sbin/nologin ulpbank
inside useradd --no-create-home --shell /bin/sh ulpuser
inside systemctl daemon-reload
inside systemctl enable --now ulpd.socket >/dev/null 2>&1 || fail "cannot enable ulpd.socket"
inside systemctl start ulp-bank.service
[ "$(inside systemctl is-active ulpd.service || true)" = inactive ] ||
        fail "ulpd.service runs before any request: not socket-activated"

# fee_of UNIT [PID]: the fee of the newest report of UNIT's victim (of process PID only:
# right after a restart the newest line may still be the old process's).
fee_of() {
        inside journalctl -u "$1" ${2:+_PID="$2"} -o cat --no-pager -n 1 2>/dev/null |
                sed -n 's/^fee for a 1000.00 transfer: \([0-9.]*\) .*/\1/p'
}
# How many reports unit $1's victim has made.
reports_of() {
        inside journalctl -u "$1" -o cat --no-pager 2>/dev/null | grep -c '^fee for a 1000.00 transfer' || true
}
# Waits (60 s at most, the victim reports every second) for two more reports of unit $1.
wait_two_reports() {
        local n0 deadline=$(($(date +%s) + 60 * SLOW))
        n0=$(reports_of "$1")
        while [ "$(date +%s)" -lt "$deadline" ]; do
                [ "$(reports_of "$1")" -ge $((n0 + 2)) ] && return 0
                sleep 0.1
        done
        fail "$1 stopped reporting"
}
# Waits (60 s at most, the victim reports every second) for the fee $2 in unit $1 (in
# the reports of process $3 only, when given).
wait_fee() {
        local f= deadline=$(($(date +%s) + 60 * SLOW))
        while [ "$(date +%s)" -lt "$deadline" ]; do
                f=$(fee_of "$1" "${3:-}")
                [ "$f" = "$2" ] && return 0
                sleep 0.1
        done
        fail "$1 reports a fee of '${f}', not $2"
}
wait_fee ulp-bank.service 100.00
bank=$(inside systemctl show -p MainPID --value ulp-bank.service)
bank_uid=$(inside stat -c %u "/proc/$bank")
echo "victim ulp-bank.service: pid $bank, uid $bank_uid, reports 100.00"

# ---- root patches the hardened service of another uid through ulpd -------------------
out=$(inside "$ulpctl" apply -p "$bank" /usr/local/lib/ulp-test/fix-fee.so 2>&1) ||
        fail "apply through the socket-activated ulpd failed: $out"
echo "$out"
wait_fee ulp-bank.service 10.00
ok "root applied fix-fee to ulp-bank (uid $bank_uid) through ulpd; the victim reports 10.00"
[ "$(inside systemctl is-active ulpd.service)" = active ] || fail "ulpd.service did not start on the request"
[ "$(inside systemctl show -p Type --value ulpd.service)" = notify ] || fail "ulpd.service is not Type=notify"
status=$(inside systemctl show -p StatusText --value ulpd.service)
[ -n "$status" ] || fail "ulpd sent systemd no STATUS="
ok "ulpd.service was started by its socket, Type=notify, status \"$status\""
out=$(inside "$ulpctl" status -p "$bank" 2>&1) || fail "status failed: $out"
grep -q fix-fee <<<"$out" || fail "status does not list fix-fee: $out"
out=$(inside "$ulpctl" revert -p "$bank" fix-fee 2>&1) || fail "revert failed: $out"
wait_fee ulp-bank.service 100.00
ok "reverted; the victim reports 100.00 again"

# ---- an unprivileged user: their own process yes, another uid's no --------------------
inside systemd-run --quiet --uid=ulpuser --unit=ulp-userbank.service /usr/local/lib/ulp-test/bank 1
wait_fee ulp-userbank.service 100.00
ubank=$(inside systemctl show -p MainPID --value ulp-userbank.service)
out=$(inside setpriv --reuid=ulpuser --regid=ulpuser --clear-groups \
        "$ulpctl" apply -p "$ubank" /usr/local/lib/ulp-test/fix-fee.so 2>&1) ||
        fail "ulpuser could not patch their own process $ubank: $out"
wait_fee ulp-userbank.service 10.00
ok "ulpuser applied fix-fee to their own process through ulpd"
out=$(inside setpriv --reuid=ulpuser --regid=ulpuser --clear-groups \
        "$ulpctl" apply -p "$bank" /usr/local/lib/ulp-test/fix-fee.so 2>&1) &&
        fail "ulpuser patched ulp-bank of uid $bank_uid: $out"
ok "ulpuser refused ulp-bank: $out"
wait_two_reports ulp-bank.service
[ "$(fee_of ulp-bank.service)" = 100.00 ] || fail "the refused apply changed ulp-bank"
out=$(inside setpriv --reuid=ulpuser --regid=ulpuser --clear-groups "$ulpctl" revert -p "$ubank" fix-fee 2>&1) ||
        fail "ulpuser could not revert: $out"
wait_fee ulp-userbank.service 100.00

# ---- the journal ----------------------------------------------------------------------
recs=$(inside journalctl -o cat --no-pager ULP_PID="$bank" ULP_PATCH=fix-fee)
for want in "apply of fix-fee in pid $bank done:" "revert of fix-fee in pid $bank done:"; do
        grep -qF "$want" <<<"$recs" || fail "no '$want' record with ULP_PID=$bank in the journal: $recs"
done
ok "the journal has ULP_PID=$bank records of the apply and the revert"

# ---- the unit as it was, without CAP_DAC_OVERRIDE: the cause is named -----------------
inside mkdir -p /run/systemd/system/ulpd.service.d
printf '[Service]\nCapabilityBoundingSet=~CAP_DAC_OVERRIDE\n' |
        inside tee /run/systemd/system/ulpd.service.d/50-no-dac-override.conf >/dev/null
inside systemctl daemon-reload
inside systemctl stop ulpd.service
out=$(inside "$ulpctl" apply -p "$bank" /usr/local/lib/ulp-test/fix-fee.so 2>&1) &&
        fail "applied without CAP_DAC_OVERRIDE: $out"
want="cannot open /proc/$bank/mem for writing: permission denied: the file belongs to uid $bank_uid, and this process (uid 0) lacks CAP_DAC_OVERRIDE"
grep -qF "$want" <<<"$out" || fail "without CAP_DAC_OVERRIDE: got '$out', want '$want'"
ok "without CAP_DAC_OVERRIDE ulpd says: $out"
wait_two_reports ulp-bank.service
[ "$(fee_of ulp-bank.service)" = 100.00 ] || fail "the refused apply changed ulp-bank"
inside rm /run/systemd/system/ulpd.service.d/50-no-dac-override.conf
inside systemctl daemon-reload
inside systemctl stop ulpd.service

# ---- a sticky patch: recorded in the StateDirectory, reaching a process started later -
inside systemctl stop ulp-userbank.service
out=$(inside "$ulpctl" apply --all --persist /usr/local/lib/ulp-test/fix-fee-pinned.so 2>&1) ||
        fail "apply --all --persist failed: $out"
wait_fee ulp-bank.service 10.00
[ -n "$(inside ls -A /var/lib/ulp)" ] || fail "no sticky patch record in /var/lib/ulp"
ok "sticky fix-fee-pinned applied to the running ulp-bank and recorded in /var/lib/ulp"
inside systemctl restart ulp-bank.service
bank2=$(inside systemctl show -p MainPID --value ulp-bank.service)
if inside journalctl -u ulpd.service -o cat --no-pager | grep "listening for exec events" >/dev/null; then
        wait_fee ulp-bank.service 10.00 "$bank2"
        ok "the restarted ulp-bank (pid $bank2) got the sticky patch after its exec"
else
        # In a container's pid namespace the kernel refuses the process connector: a
        # process started later gets the patch when ulpd next starts.
        inside journalctl -u ulpd.service -o cat --no-pager | grep "no exec events" >/dev/null ||
                fail "ulpd said nothing about exec events"
        wait_fee ulp-bank.service 100.00
        inside systemctl restart ulpd.service
        wait_fee ulp-bank.service 10.00
        ok "no exec events in this container; the restarted ulp-bank (pid $bank2) got the sticky patch when ulpd restarted"
fi
out=$(inside "$ulpctl" revert --all --persist fix-fee-pinned 2>&1) || fail "revert --all --persist failed: $out"
wait_fee ulp-bank.service 100.00
ok "the sticky patch reverted and dropped"

# ---- the unit's --patch-dir: a file dropped there reaches the running service -------
inside systemctl show -p ExecStart --value ulpd.service | grep -F -- >/dev/null "--patch-dir /etc/ulp/patches.d" ||
        fail "the unit does not start ulpd with --patch-dir /etc/ulp/patches.d"
# As configuration management does it: written aside, renamed into place.
inside install -m 0644 /usr/local/lib/ulp-test/fix-fee-pinned.so /etc/ulp/patches.d/.fix-fee-pinned.so.new
inside mv /etc/ulp/patches.d/.fix-fee-pinned.so.new /etc/ulp/patches.d/fix-fee-pinned.so
wait_fee ulp-bank.service 10.00
ok "fix-fee-pinned.so dropped into the unit's /etc/ulp/patches.d: ulp-bank reports 10.00"
inside rm /etc/ulp/patches.d/fix-fee-pinned.so
wait_fee ulp-bank.service 100.00
ok "the file removed: ulp-bank reports 100.00 again"

# ---- the watchdog restarts a stuck ulpd ------------------------------------------------
printf '[Service]\nWatchdogSec=2s\nTimeoutAbortSec=2s\n' |
        inside tee /run/systemd/system/ulpd.service.d/60-short-watchdog.conf >/dev/null
inside systemctl daemon-reload
inside systemctl restart ulpd.service
old=$(inside systemctl show -p MainPID --value ulpd.service)
restarts=$(inside systemctl show -p NRestarts --value ulpd.service)
inside sh -c "kill -STOP $old"
deadline=$(($(date +%s) + 60 * SLOW))
while [ "$(date +%s)" -lt "$deadline" ]; do
        new=$(inside systemctl show -p MainPID --value ulpd.service)
        [ "$new" != 0 ] && [ "$new" != "$old" ] && break
        sleep 0.1
done
[ "$new" != 0 ] && [ "$new" != "$old" ] || fail "the watchdog did not restart the stopped ulpd (pid $old) in 60 s"
[ "$(inside systemctl show -p NRestarts --value ulpd.service)" -gt "$restarts" ] || fail "NRestarts did not grow"
# journald may write the line a moment after the restart: wait for it.
for ((i = 0; i < 100; i++)); do
	inside journalctl -u ulpd.service -o cat --no-pager | grep -i "watchdog timeout" >/dev/null && break
	sleep 0.1
done
[ "$i" -lt 100 ] || fail "no watchdog timeout in the journal"
out=$(inside "$ulpctl" status 2>&1) || fail "the restarted ulpd does not answer: $out"
ok "the watchdog replaced the stuck ulpd (pid $old) by pid $new, which answers"
inside rm /run/systemd/system/ulpd.service.d/60-short-watchdog.conf
inside systemctl daemon-reload

# ---- systemctl stop during a transition: the next ulpd finishes it -------------------
# The victim (of another uid, hardened like ulp-bank) has a sleeper thread that stays 20 s
# inside outer(), which the patch replaces: the transition cannot finish before it
# returns. Its status file says what it runs; its other threads call outer() all along
# and count any call chain that mixes versions (bad=).
inside systemd-run --quiet --unit=ulp-sleeper.service --uid=ulpbank -p PrivateUsers=yes \
        -p MemoryDenyWriteExecute=yes -p SystemCallFilter=@system-service -p StateDirectory=ulp-sleeper \
        /usr/local/lib/ulp-test/daemon-victim /var/lib/ulp-sleeper/status 2 200 20000
vstatus() { inside cat /var/lib/ulp-sleeper/status 2>/dev/null || true; }
wait_status() {  # a regex the status line must match, within 60 s (times SLOW)
        local deadline=$(($(date +%s) + 60 * SLOW))
        while [ "$(date +%s)" -lt "$deadline" ]; do
                vstatus | grep -E "$1" >/dev/null && return 0
                sleep 0.1
        done
        fail "the sleeper victim's status '$(vstatus)' does not match '$1'"
}
wait_status 'sleeper=1'
sleeper=$(inside systemctl show -p MainPID --value ulp-sleeper.service)
inside "$ulpctl" apply -p "$sleeper" --timeout 120 /usr/local/lib/ulp-test/daemon-fix.so >"$tmp/apply-sleeper.log" 2>&1 &
apply_pid=$!
wait_status 'v2=[1-9]'
wait_status 'sleeper=1'    # still inside: the transition is under way
t0=$(date +%s%N)
inside systemctl stop ulpd.service
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$apply_pid" && fail "the apply ended well although ulpd stopped: $(cat "$tmp/apply-sleeper.log")"
grep -qF "ulpd is stopping; the transition stays in the target and the next ulpd finishes it" "$tmp/apply-sleeper.log" ||
        fail "the waiting client was not told why: $(cat "$tmp/apply-sleeper.log")"
ok "systemctl stop ulpd.service took $stop_ms ms during the transition in pid $sleeper ($(vstatus)); the client was told"
# (it once exited with an error here in a load test: what it said is kept)
inside systemctl start ulpd.service ||
        fail "ulpd did not start after the stop during a transition: $(inside systemctl status ulpd.service --no-pager -n 0 2>&1 | head -6)
$(inside journalctl -u ulpd.service -o cat --no-pager -n 30 2>&1)"
inside journalctl -u ulpd.service -o cat --no-pager | grep -F "taking over the unfinished transition in pid $sleeper" >/dev/null ||
        fail "the restarted ulpd did not take over the transition"
# Taken over while the sleeper is still inside: the new ulpd, not the old, waits for it.
vstatus | grep 'sleeper=1' >/dev/null || fail "the sleeper returned before the restarted ulpd took over: $(vstatus)"
ok "the restarted ulpd took over the transition while the sleeper is inside ($(vstatus))"
wait_status 'sleeper=0'
deadline=$(($(date +%s) + 60 * SLOW))
while [ "$(date +%s)" -lt "$deadline" ]; do
        st=$(inside "$ulpctl" status -p "$sleeper" 2>&1 || true)
        grep -q "daemon-fix: patched" <<<"$st" && break
        sleep 0.2
done
grep -q "daemon-fix: patched" <<<"$st" || fail "the transition did not finish after the sleeper left: $st"
# The victim lives on, the same process, every thread on the new version: its count of
# calls answered by v2 keeps growing (it died of SIGSEGV here once, docs/systemd.md).
v1_of() { vstatus | sed -n 's/^v1=\([0-9]*\) .*/\1/p'; }
v2_of() { vstatus | sed -n 's/.* v2=\([0-9]*\) .*/\1/p'; }
v1a=$(v1_of) v2a=$(v2_of)
deadline=$(($(date +%s) + 60 * SLOW))
while [ "$(date +%s)" -lt "$deadline" ] && [ "$(v2_of)" -le $((v2a + 100)) ]; do sleep 0.1; done
[ "$(v2_of)" -gt $((v2a + 100)) ] || fail "the victim stopped answering after the transition: $(vstatus)"
[ "$(v1_of)" = "$v1a" ] || fail "a thread still runs the old version after the transition: $(vstatus)"
[ "$(inside systemctl is-active ulp-sleeper.service || true)" = active ] &&
        [ "$(inside systemctl show -p MainPID --value ulp-sleeper.service)" = "$sleeper" ] ||
        fail "the victim (pid $sleeper) did not survive: $(inside systemctl status ulp-sleeper.service --no-pager -n 5 2>&1)"
vstatus | grep 'bad=0 ' >/dev/null || fail "the victim saw mixed versions: $(vstatus)"
for ((i = 0; i < 100; i++)); do
        inside journalctl -u ulpd.service -o cat --no-pager | grep -F "resume of daemon-fix in pid $sleeper done" >/dev/null && break
        sleep 0.1
done
[ "$i" -lt 100 ] || fail "no record of the taken-over transition's end in ulpd's journal"
ok "the restarted ulpd finished the transition when the sleeper returned; the victim lives on v2 ($(vstatus))"

ok "all checks passed in $(elapsed)"
