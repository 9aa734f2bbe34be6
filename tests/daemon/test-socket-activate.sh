#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# systemd-socket-activate hands ulpd a listening socket (LISTEN_FDS=1): ulpd serves on
# it instead of binding its own.
set -eu
command -v systemd-socket-activate >/dev/null || { echo "FAIL: systemd-socket-activate missing (package systemd, scripts/setup-deps.sh)"; exit 1; }
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
sock=$tmp/activated.sock

systemd-socket-activate -l "$sock" "$ULPD" --no-recover --patch-dir "" --socket "$tmp/not-used.sock" --state-dir "$tmp/state" \
        >"$tmp/log" 2>&1 &
pid=$!
for i in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "FAIL: no socket"; cat "$tmp/log"; exit 1; }

# The first connection starts ulpd; the reply proves it took the passed socket.
out=$(python3 -c '
import sys; sys.path.insert(0, sys.argv[2])
from ulpdtest import Client
c = Client(sys.argv[1]); print(c.request({"method": "ping"})["type"]); print(c.status()["type"])
' "$sock" "$(dirname "$0")")
echo "$out"
[ "$out" = "pong
status" ] || { echo "FAIL: unexpected replies"; cat "$tmp/log"; exit 1; }
grep -q "socket passed by systemd" "$tmp/log" || { echo "FAIL: ulpd did not use the passed socket"; cat "$tmp/log"; exit 1; }
[ ! -e "$tmp/not-used.sock" ] || { echo "FAIL: ulpd bound its own socket too"; exit 1; }
echo "ok: ulpd serves on the socket systemd-socket-activate passed"
