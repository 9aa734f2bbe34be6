#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Patch files a client changes under ulpd: truncated in a loop while ulpd reads them,
grown past the size cap, oversized. ulpd works from its own sealed copy: it never dies,
answers each request with a result or one line, and holds no victim thread while it
refuses."""

import os
import random
import threading
import time

from ulpdtest import Client, Daemon, check, fail, need_root, victim_status, wait_for

import subprocess

need_root()
VICTIM, PATCH = os.environ["VICTIM"], os.environ["PATCH"]
CAP = 64 << 20
d = Daemon().start()
rng = random.Random(int(os.environ.get("PATCHFILE_SEED", str(random.randrange(1 << 32)))))
orig = open(PATCH, "rb").read()
victim = None


def one_line(r):
    msg = r.get("error") or r.get("report", {}).get("error") or ""
    return "\n" not in msg


def traced(pid):
    with open(f"/proc/{pid}/status") as f:
        return "TracerPid:\t0" not in f.read()


def churn(stop, action):
    while not stop.is_set():
        action()


try:
    st = os.path.join(d.tmp, "victim.status")
    victim = subprocess.Popen([VICTIM, st, "4", "200"])
    if not wait_for(lambda: (victim_status(st) or {}).get("v1", 0) > 0, 10):
        fail("victim did not start")
    c = Client(d.socket)

    # 1. A file truncated and rewritten in a loop while ulpd copies and parses it.
    path = os.path.join(d.tmp, "daemon-fix.so")
    with open(path, "wb") as f:
        f.write(orig)
    wfd = os.open(path, os.O_RDWR)

    def truncate_rewrite():
        # Short for a while, then whole for a while: ulpd may find it either way, or
        # shrinking under its feet.
        os.ftruncate(wfd, rng.randrange(len(orig)))
        time.sleep(rng.random() / 1000)
        os.ftruncate(wfd, 0)
        os.pwrite(wfd, orig, 0)
        time.sleep(rng.random() / 1000)

    def request_on(i, fd):
        if i % 6 == 5:
            r = c.request({"method": "apply", "pids": [victim.pid], "name": "daemon-fix.so", "wait": True}, fd=fd)
            res = r.get("results", [{}])[0] if r.get("type") == "result" else r
            if res.get("ok"):
                c.request({"method": "revert", "pids": [victim.pid], "name": "daemon-fix", "wait": True})
            return r, res, "apply ok" if res.get("ok") else "apply refused"
        r = c.request({"method": "check", "pid": victim.pid, "name": "daemon-fix.so"}, fd=fd)
        return r, r, "check " + ("answered" if r.get("type") == "result" else "refused")

    stop = threading.Event()
    t = threading.Thread(target=churn, args=(stop, truncate_rewrite))
    t.start()
    outcomes = {}
    try:
        for i in range(int(os.environ.get("PATCHFILE_ROUNDS", "400"))):
            fd = os.open(path, os.O_RDONLY)
            try:
                r, res, key = request_on(i, fd)
            except (ConnectionResetError, BrokenPipeError) as e:
                fail(f"ulpd dropped request {i} on a file truncated meanwhile ({e}); alive: {d.alive()}, "
                     f"exit {d.proc.returncode}")
            os.close(fd)
            outcomes[key] = outcomes.get(key, 0) + 1
            if not d.alive():
                fail(f"ulpd died during request {i} on a file truncated meanwhile:\n{d.read_log()[-2000:]}")
            if not one_line(res):
                fail(f"request {i}: a reply of more than one line: {res}")
    finally:
        stop.set()
        t.join()
        os.close(wfd)
    check(d.alive(), f"ulpd alive after {i + 1} requests on a file truncated in a loop ({outcomes})")

    # 2. Oversized: refused before anything else, with the cap in the message.
    mfd = os.memfd_create("grown", os.MFD_CLOEXEC)
    os.ftruncate(mfd, CAP + 1)
    r = c.request({"method": "check", "pid": victim.pid, "name": "daemon-fix.so"}, fd=os.dup(mfd))
    check(r.get("type") == "error" and r["error"] == "the patch file is larger than 64 MiB",
          f"a file over the cap is refused: {r.get('error')}")

    # 3. A file the client grows past the cap and shrinks back, again and again, while
    #    ulpd checks it: ulpd reads at most the cap, and the victim is never held.
    os.ftruncate(mfd, 0)
    os.pwrite(mfd, orig, 0)

    def grow_shrink():
        os.ftruncate(mfd, 80 << 20)
        os.ftruncate(mfd, len(orig))

    before = victim_status(st)["v1"]
    stop = threading.Event()
    t = threading.Thread(target=churn, args=(stop, grow_shrink))
    t.start()
    seen = set()
    try:
        for i in range(20):
            start = time.monotonic()
            r = c.request({"method": "check", "pid": victim.pid, "name": "daemon-fix.so"}, fd=os.dup(mfd))
            took = time.monotonic() - start
            msg = r.get("error") or r.get("report", {}).get("error", "")
            seen.add("too large" if "larger than 64 MiB" in msg else r.get("type"))
            if not d.alive():
                fail(f"ulpd died on a growing file:\n{d.read_log()[-2000:]}")
            if "larger than 64 MiB" in msg and traced(victim.pid):
                fail("the victim is traced while ulpd refuses an oversized file")
    finally:
        stop.set()
        t.join()
    check(d.alive(), f"ulpd alive after 20 checks of a file grown and shrunk meanwhile ({sorted(seen)})")
    # Its counter moves on (on a loaded machine perhaps only after a while): never held.
    wait_for(lambda: (victim_status(st) or {}).get("v1", 0) > before, 60)
    after = victim_status(st)["v1"]
    check(after > before and not traced(victim.pid), f"the victim kept running, untraced ({before} -> {after} calls)")
    check(not traced(victim.pid) and victim.poll() is None, "the victim is alive and not traced")
    r = c.status()
    check(r.get("type") == "status", "ulpd still serves status")
finally:
    if victim:
        victim.kill()
        victim.wait()
    d.stop()
print("PASS")
