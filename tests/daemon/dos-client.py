#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Clients for test-dos.py, run as an unprivileged uid (setpriv). Each mode prints one
JSON line per finding on stdout:

  ping SOCKET                  one ping: {"latency": s, "reply": {...}}
  hold SOCKET N [trickle]      opens N connections, {"held": k, "refused": n, "message": m};
                               with trickle, then sends a byte a second on each held one
                               and reports when ulpd closed them: {"closed_after": [s...],
                               "messages": [...]}; without, holds them until killed
  fdflood SOCKET SECONDS       keeps connections busy passing 250 fds a message:
                               {"sent_fds": n, "messages": [...]}
  apply SOCKET PATCH wait|nowait PID...   one apply to all of them:
                               {"seconds": s, "errors": [...], "pids": [...] (of each
                               error), "started": [pid...]}
  spin SOCKET PATCH PID N SECONDS   N connections applying PATCH to PID over and over:
                               {"applies": n, "errors": [...], "longest": s}
"""

import json
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ulpdtest import Client, open_proof  # noqa: E402


def out(o):
    print(json.dumps(o), flush=True)


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def read_reply(s, timeout):
    """What ulpd sent before closing or within timeout: (first line or None, closed)."""
    s.settimeout(timeout)
    data = b""
    try:
        while b"\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, BlockingIOError):
        return None, False
    except ConnectionResetError:
        pass
    line = data.split(b"\n", 1)[0]
    return (json.loads(line) if line else None), True


def ping(path):
    t = time.monotonic()
    c = Client(path, timeout=120)
    r = c.request({"method": "ping"})
    out({"latency": time.monotonic() - t, "reply": r})


def hold(path, n, trickle):
    held, refused, message = [], 0, None
    for _ in range(n):
        try:
            held.append(connect(path))
        except OSError as e:
            refused += 1
            message = message or str(e)
    # Each gets exactly one line: a refused connection its error, a served one its pong.
    ping = (json.dumps({"version": 1, "method": "ping"}) + "\n").encode()
    for s in held:
        try:
            s.send(ping)
        except OSError:
            pass
    kept = []
    for s in held:
        reply, _ = read_reply(s, 120)
        if reply and reply.get("type") == "pong":
            kept.append(s)
            continue
        refused += 1
        if reply and not message:
            message = reply.get("error")
        s.close()
    out({"held": len(kept), "refused": refused, "message": message})
    if not trickle:
        while True:
            time.sleep(3600)
    start = time.monotonic()
    first = {}
    closed_after, messages = [], []
    live = list(kept)
    while live and time.monotonic() - start < 60:
        for s in list(live):
            try:
                s.send(b"{" if s not in first else b" ")
                first.setdefault(s, time.monotonic())
            except OSError:
                pass
        end = time.monotonic() + 1
        while live and time.monotonic() < end:
            r, _, _ = select.select(live, [], [], max(0, end - time.monotonic()))
            for s in r:
                reply, closed = read_reply(s, 1)
                if reply is None and not closed:
                    continue
                closed_after.append(time.monotonic() - first.get(s, start))
                messages.append(reply.get("error") if reply else None)
                live.remove(s)
                s.close()
    out({"closed_after": closed_after, "messages": messages, "still_open": len(live)})


def fdflood(path, seconds):
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(250)]
    sent, messages = 0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            s = connect(path)
        except OSError:
            time.sleep(0.01)
            continue
        try:
            while time.monotonic() < end:
                socket.send_fds(s, [b"{"], fds)
                sent += len(fds)
        except OSError:
            pass
        reply, _ = read_reply(s, 2)
        if reply and len(messages) < 5 and reply.get("error") not in messages:
            messages.append(reply.get("error"))
        s.close()
    out({"sent_fds": sent, "messages": messages})


def spin(path, patch, pid, n, seconds):
    """n connections applying patch to pid again and again."""
    import threading
    results, lock = [], threading.Lock()
    end = time.monotonic() + seconds

    def worker():
        c = Client(path)
        while time.monotonic() < end:
            t = time.monotonic()
            c.s.settimeout(max(0.1, end - t))
            targets, fds = proofs([pid])
            fds.insert(0, os.open(patch, os.O_RDONLY))
            try:
                r = c.request({"method": "apply", "pids": [pid], "targets": targets, "name": "spin.so",
                               "wait": True}, fd=fds)
            except (socket.timeout, OSError):
                break   # still waiting for its turn when the time is up
            finally:
                for fd in fds:
                    os.close(fd)
            res = (r.get("results") or [{}])[0]
            with lock:
                results.append((time.monotonic() - t, res.get("error") or r.get("error")))
        c.close()
    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out({"applies": len(results), "errors": sorted({e for _, e in results if e}),
         "longest": max((s for s, _ in results), default=0)})


def proofs(pids):
    """What ulpctl sends for pids: the pids this user may trace (the kernel decides at
    the open) and their descriptors, two each; the others go without and are refused."""
    targets, fds = [], []
    for pid in pids:
        try:
            fds += open_proof(pid)
            targets.append(pid)
        except OSError:
            pass
    return targets, fds


def apply(path, patch, wait, pids):
    """One request applying patch to all of pids."""
    t = time.monotonic()
    c = Client(path, timeout=600)
    targets, fds = proofs(pids)
    fds.insert(0, os.open(patch, os.O_RDONLY))
    # the results of many processes come in parts (docs/limits.md, "Replies")
    r = c.request({"method": "apply", "pids": pids, "targets": targets, "name": "fix.so", "wait": wait,
                   "parts": True, "options": {"timeout_ms": 600000}}, fd=fds)
    results = []
    while r and r.get("type") == "result_part":
        results += r.get("results", [])
        r = c.recv()
    r = r or {}
    results += r.get("results", [])
    out({"seconds": time.monotonic() - t, "errors": [x.get("error") for x in results],
         "pids": [x.get("pid") for x in results],
         "started": [x["pid"] for x in results if x.get("started")], "error": r.get("error")})


mode, path = sys.argv[1], sys.argv[2]
if mode == "ping":
    ping(path)
elif mode == "hold":
    hold(path, int(sys.argv[3]), len(sys.argv) > 4 and sys.argv[4] == "trickle")
elif mode == "spin":
    spin(path, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
elif mode == "apply":
    apply(path, sys.argv[3], sys.argv[4] == "wait", [int(x) for x in sys.argv[5:]])
elif mode == "fdflood":
    fdflood(path, float(sys.argv[3]))
else:
    sys.exit(f"unknown mode {mode}")
