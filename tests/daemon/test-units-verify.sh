#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# `systemd-analyze verify` of ulpd.service and ulpd.socket prints nothing: no unknown
# keys, no bad values, ExecStart exists (the build-tree copy points at the built ulpd).
set -eu
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze missing"; exit 77; }
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
systemd-analyze security --offline=true ./ulpd.service 2>/dev/null | tail -1 || true
