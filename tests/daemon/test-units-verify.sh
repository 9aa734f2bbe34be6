#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# `systemd-analyze verify` of ulpd.service and ulpd.socket prints nothing: no unknown
# keys, no bad values, ExecStart exists (the build-tree copy points at the built ulpd).
# And the hardening keeps `systemd-analyze security` at an exposure of at most 5.0
# ("MEDIUM" and above mean the sandboxing was lost).
set -eu
command -v systemd-analyze >/dev/null || { echo "FAIL: systemd-analyze missing (package systemd, scripts/setup-deps.sh)"; exit 1; }
service=$1 socket=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$service" "$tmp/ulpd.service"
cp "$socket" "$tmp/ulpd.socket"
cd "$tmp"
SYSTEMD_LOG_LEVEL=info systemd-analyze verify --man=no ./ulpd.service ./ulpd.socket >out 2>&1 || {
        echo "FAIL: systemd-analyze verify failed"; cat out; exit 1; }
if [ -s out ]; then
        echo "FAIL: systemd-analyze verify is not clean:"; cat out; exit 1
fi
grep -q '^Type=notify' ulpd.service
grep -q '^ListenStream=/run/ulp/ulpd.sock' ulpd.socket
echo "ok: systemd-analyze verify clean"
if ! systemd-analyze security --offline=true --threshold=50 ./ulpd.service >security 2>&1; then
        echo "FAIL: systemd-analyze security: exposure above 5.0 or error:"; tail -5 security; exit 1
fi
grep -q 'Overall exposure level for ulpd.service' security || {
        echo "FAIL: systemd-analyze security gave no exposure level:"; tail -5 security; exit 1; }
echo "ok: $(grep 'Overall exposure level' security | sed 's/^[^O]*//')"
