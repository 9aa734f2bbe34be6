#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Garbage, truncated, oversized and out-of-order messages, odd file descriptors and
many clients at once: ulpd answers with an error or closes, and keeps serving."""

import json
import os
import random
import socket
import threading
import time

from ulpdtest import SLOWDOWN, Client, Daemon, check, fail, wait_for

d = Daemon().start()
rng = random.Random(int(os.environ.get("FUZZ_SEED", "1234")))


def still_serving(what):
    c = Client(d.socket, timeout=10)
    r = c.status()
    c.close()
    check(d.alive() and r.get("type") == "status", f"ulpd still answers status after {what}")


def raw(data, fd=None, expect_reply=True):
    """Sends data, returns whatever ulpd answered before closing (or b'' on timeout)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5 * SLOWDOWN)
    s.connect(d.socket)
    try:
        if fd is not None:
            socket.send_fds(s, [data], [fd])
        else:
            s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    try:
        while expect_reply:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if out.endswith(b"\n"):
                break
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return out


# random bytes, with and without a newline
for i in range(200):
    n = rng.randint(1, 4096)
    data = bytes(rng.getrandbits(8) for _ in range(n))
    raw(data + (b"\n" if i % 2 else b""), expect_reply=bool(i % 2))
still_serving("200 random messages")

# every truncation of a valid request, and mutations of it
good = json.dumps({"version": 1, "method": "status", "pid": 0}).encode()
for cut in range(1, len(good)):
    out = raw(good[:cut] + b"\n")
    if b'"type":"error"' not in out:
        fail(f"truncated request {good[:cut]!r} got {out!r}")
check(True, "every truncated request gets an error reply")
for i in range(300):
    b = bytearray(good)
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] = rng.getrandbits(8)
    raw(bytes(b) + b"\n")
still_serving("300 mutated requests")

# wrong version, wrong types, unknown methods, absurd values
for msg in [{"version": 2, "method": "status"}, {"method": "status"}, {"version": "1", "method": "status"},
            {"version": 1}, {"version": 1, "method": 7}, {"version": 1, "method": "apply"},
            {"version": 1, "method": "apply", "pids": "x"}, {"version": 1, "method": "apply", "pids": [-1]},
            {"version": 1, "method": "apply", "pids": [2**40]}, {"version": 1, "method": "apply", "pids": [1, 1]},
            {"version": 1, "method": "revert", "pids": [1]}, {"version": 1, "method": "check"},
            {"version": 1, "method": "status", "pid": "1"}, {"version": 1, "method": "status", "pid": 2**33},
            {"version": 1, "method": "apply", "pids": [1], "options": {"timeout_ms": -5}},
            {"version": 1, "method": "apply", "pids": [1], "name": "../../etc/passwd"},
            {"version": 1, "method": "x" * 10000}, {"version": 1, "type": "result", "results": []},
            [1, 2, 3], "string", None, {"version": 1, "method": "status", "nested": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]:
    out = raw(json.dumps(msg).encode() + b"\n")
    reply = [json.loads(l) for l in out.splitlines() if l.strip()]
    if msg == {"version": 1, "method": "status", "pid": 2**33}:
        pass
    if not reply or reply[-1].get("type") not in ("error",):
        fail(f"{msg!r:.80} got {out!r:.200}")
check(True, "malformed and invalid requests each get one error line")
still_serving("invalid requests")

# an oversized line: ulpd says so and closes, without reading gigabytes
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(d.socket)
s.settimeout(10 * SLOWDOWN)
sent = 0
try:
    while sent < (64 << 20):
        s.sendall(b"{" + b"\"a\":1," * 10000)
        sent += 60001
except (BrokenPipeError, ConnectionResetError):
    pass
out = b""
try:
    while True:
        c = s.recv(65536)
        if not c:
            break
        out += c
except (socket.timeout, ConnectionResetError):
    pass
s.close()
check(b"too large" in out and sent < (64 << 20), f"oversized message refused after {sent} bytes: {out[:120]!r}")
still_serving("an oversized message")

# file descriptors: a pipe (would block a reader forever), a directory, a socket, many fds
r, w = os.pipe()
out = raw(json.dumps({"version": 1, "method": "apply", "pids": [os.getpid()], "name": "p.so"}).encode() + b"\n", fd=r)
check(b"regular file" in out, "a pipe as the patch is refused, not read")
dfd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
out = raw(json.dumps({"version": 1, "method": "check", "pid": os.getpid()}).encode() + b"\n", fd=dfd)
check(b"regular file" in out, "a directory as the patch is refused")
sp = socket.socketpair()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(d.socket)
for i in range(50):
    socket.send_fds(s, [b" "], [sp[0].fileno(), r, w, dfd])
s.sendall(b'{"version":1,"method":"ping"}\n')
s.settimeout(5 * SLOWDOWN)
check(b"pong" in s.recv(4096), "a flood of passed fds is closed and the request still answered")
s.close()
os.close(r); os.close(w); os.close(dfd)
still_serving("odd file descriptors")
open_fds = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
check(open_fds < 20, f"ulpd did not leak the passed fds ({open_fds} open)")

# many clients at once: some stall mid-message, some hang up, the rest get answers
results = []
stalled = []


def client(i):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20 * SLOWDOWN)
        s.connect(d.socket)
        if i % 5 == 0:
            s.sendall(b'{"version":1,"meth')   # stalls: must not block the others
            stalled.append(s)
            return
        if i % 7 == 0:
            s.sendall(b'{"version":1,"method":"status"}\n')
            s.close()                            # gone before the reply
            return
        c = Client.__new__(Client)
        c.s, c.buf = s, b""
        for _ in range(3):
            r = c.request({"method": "status", "pid": os.getpid()})
            results.append(r.get("type") == "status")
        s.close()
    except Exception as e:
        results.append(False)
        print(f"client {i}: {e}")


threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
t0 = time.time()
for t in threads:
    t.start()
for t in threads:
    t.join()
check(results and all(results), f"{len(results)} requests of concurrent clients answered in {time.time() - t0:.1f}s")
check(d.alive(), "ulpd alive with stalled clients connected")

# out of order: a second request while the first is in flight is refused, and the
# in-flight one is unaffected. A transition is the only request that stays in flight;
# without a patchable target, send two requests back to back in one write instead.
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10 * SLOWDOWN)
s.connect(d.socket)
s.sendall(b'{"version":1,"method":"ping"}\n{"version":1,"method":"status","pid":%d}\n{"version":1,"method":"ping"}\n'
          % os.getpid())
got = b""
while got.count(b"\n") < 3:
    c = s.recv(65536)
    if not c:
        break
    got += c
types = [json.loads(l)["type"] for l in got.splitlines()]
check(types == ["pong", "status", "pong"], f"pipelined requests answered in order: {types}")
s.close()

# idle clients are dropped (stalled ones above, after the idle timeout)
# (10 s without a whole request; the deadline leaves room for a loaded machine)
wait_for(lambda: len(os.listdir(f"/proc/{d.proc.pid}/fd")) < 20, 15, 0.2)
n = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
check(n < 20, f"stalled clients closed after the idle timeout ({n} fds open)")
for s in stalled:
    s.close()

still_serving("the whole fuzz run")
check(d.stop() == 0, "ulpd stops cleanly")
if "AddressSanitizer" in d.read_log() or "runtime error" in d.read_log():
    fail("sanitizer report in ulpd's log")
