#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""apply, status, check and revert of a real victim through ulpd; the victim itself
sees the new code and never a mixed call chain. One transition per target at a time;
--no-wait; a second request on a busy connection."""

import json
import os
import subprocess
import time

from ulpdtest import SLOWDOWN, Client, Daemon, check, need_root, victim_status, wait_for, fail

need_root()
VICTIM, PATCH = os.environ["VICTIM"], os.environ["PATCH"]
d = Daemon().start()
# ulpd's default, stretched on a loaded machine
TIMEOUT_MS = 30000 * SLOWDOWN
victims = []


def start_victim(*args, ready=lambda s: s.get("v1", 0) > 0):
    st = os.path.join(d.tmp, f"victim{len(victims)}.status")
    p = subprocess.Popen([VICTIM, st, *map(str, args)])
    victims.append(p)
    if not wait_for(lambda: ready(victim_status(st) or {}), 5):
        fail("victim did not start")
    return p, st


def fresh_status(st):
    """The victim's status as written after now (it rewrites the file every 20 ms)."""
    since = time.time_ns()
    if not wait_for(lambda: os.stat(st).st_mtime_ns > since, 2):
        fail(f"victim stopped writing {st}")
    return victim_status(st)


def patch_fd():
    return os.open(PATCH, os.O_RDONLY)


def apply(c, pid, wait=True, progress=None, **opts):
    opts.setdefault("timeout_ms", TIMEOUT_MS)
    return c.request({"method": "apply", "pids": [pid], "name": "daemon-fix.so", "wait": wait,
                      "options": opts}, fd=patch_fd(), progress=progress)


def status_of(c, pid):
    r = c.request({"method": "status", "pid": pid})
    for p in r.get("processes", []):
        if p["pid"] == pid:
            return {x["name"]: x for x in p["patches"]}
    return {}


try:
    c = Client(d.socket)

    # dry runs first, each answer known in advance: a process with no thread in the
    # patched functions would be patched at once; one with a thread held inside
    # outer() would wait for it (EBUSY), and the check names it. Nothing is written.
    def check_request(pid):
        r = c.request({"method": "check", "pid": pid, "name": "daemon-fix.so"}, fd=patch_fd())
        check(r["type"] == "result" and "report" in r, f"check of {pid} answers with a report: {r}")
        return r["report"]

    idle, _ = start_victim(0, ready=lambda s: "v1" in s)
    rep = check_request(idle.pid)
    check(rep["errno"] == 0 and not rep.get("stragglers"),
          f"check of a process with no thread in the functions: would apply ({rep.get('error')})")
    check(status_of(c, idle.pid) == {}, "check left no patch behind")
    held, _ = start_victim(0, 0, 600000, ready=lambda s: s.get("sleeper") == 1)
    rep = check_request(held.pid)
    strag = rep.get("stragglers") or []
    check(rep["errno"] == 16 and rep.get("error") == "1 thread(s) would block the transition now" and
          len(strag) == 1 and strag[0]["tid"] != held.pid and strag[0]["function"].startswith("outer"),
          f"check of a process with a thread held in outer(): EBUSY naming it ({rep.get('error')}, {strag})")
    check(status_of(c, held.pid) == {}, "check left no patch behind")

    v, st = start_victim(4, 200)

    prog = []
    r = apply(c, v.pid, progress=prog.append)
    res = r["results"][0]
    check(r["type"] == "result" and res["ok"] and res["pid"] == v.pid, f"apply through ulpd: {json.dumps(res)}")
    check(res["threads"] >= 5 and res["switched"] >= 1, "report carries threads and switched")
    check(all(p["pid"] == v.pid and p["total"] >= p["switched"] for p in prog), f"{len(prog)} progress messages")
    before = fresh_status(st)
    check(wait_for(lambda: victim_status(st)["v2"] > before["v2"], 3),
          f"victim runs version 2 ({before['v2']} -> {victim_status(st)['v2']} calls)")
    check(victim_status(st)["bad"] == 0, "victim saw no mixed-version call chain")
    s = status_of(c, v.pid)
    check(s.get("daemon-fix", {}).get("state") == "patched", f"status: patched ({s})")
    fn = sorted(f["symbol"] for f in s["daemon-fix"]["functions"])
    check(fn == ["inner", "outer"], f"status lists the functions {fn}")

    r = apply(c, v.pid)
    res = r["results"][0]
    check(not res["ok"] and res["errno_name"] == "EEXIST", f"second apply refused: {res.get('error')}")

    r = c.request({"method": "revert", "pids": [v.pid], "name": "daemon-fix", "wait": True})
    check(r["results"][0]["ok"], "revert through ulpd")
    before = fresh_status(st)
    wait_for(lambda: victim_status(st)["v1"] > before["v1"] + 100, 3)
    after = victim_status(st)
    check(after["v1"] > before["v1"] and after["v2"] == before["v2"], f"victim back on version 1 ({before} -> {after})")
    check(after["bad"] == 0, "still no mixed-version call chain")

    r = c.request({"method": "revert", "pids": [v.pid], "name": "no-such-patch", "wait": True})
    check(not r["results"][0]["ok"], f"revert of an unknown patch refused: {r['results'][0].get('error')}")

    # A sleeper holds outer() for 3 s (longer on a slow machine): the transition stays
    # running meanwhile.
    v2, st2 = start_victim(2, 200, 3000 * SLOWDOWN)
    if not wait_for(lambda: (victim_status(st2) or {}).get("sleeper") == 1, 5):
        fail(f"the sleeper of victim {v2.pid} did not enter outer(): {victim_status(st2)}")
    t0 = time.time()
    r = apply(c, v2.pid, wait=False)
    check(r["results"][0]["ok"] and r["results"][0].get("started") and time.time() - t0 < 2.5 * SLOWDOWN,
          f"--no-wait returns once started ({time.time() - t0:.2f}s)")
    state = status_of(c, v2.pid)["daemon-fix"]["state"]
    check(state == "transition", f"status: transition while the sleeper blocks it ({state}, {victim_status(st2)})")

    c2 = Client(d.socket)
    r = apply(c2, v2.pid)
    check(not r["results"][0]["ok"] and "transition running" in r["results"][0]["error"],
          f"second request for a busy target refused: {r['results'][0]['error']}")

    # out of order: a second request on a connection whose request is in flight
    c3 = Client(d.socket)
    v3, st3 = start_victim(2, 200, 2000 * SLOWDOWN)
    if not wait_for(lambda: (victim_status(st3) or {}).get("sleeper") == 1, 5):
        fail(f"the sleeper of victim {v3.pid} did not enter outer(): {victim_status(st3)}")
    c3.send({"method": "apply", "pids": [v3.pid], "name": "daemon-fix.so", "wait": True,
             "options": {"timeout_ms": TIMEOUT_MS}}, fd=patch_fd())
    c3.send({"method": "ping"})
    msgs = []
    while True:
        m = c3.recv()
        if m is None:
            break
        msgs.append(m)
    check(any(m["type"] == "error" and "already in progress" in m["error"] for m in msgs),
          "a request sent before the previous one's reply is refused and the connection closed")

    # Eventual completion: the workers sit inside outer() almost all the time, so how
    # soon a pass finds each one between two calls varies from run to run.
    ok = wait_for(lambda: status_of(c, v2.pid).get("daemon-fix", {}).get("state") == "patched", 30, 0.2)
    check(ok, "the --no-wait transition finished on its own")
    ok = wait_for(lambda: status_of(c, v3.pid).get("daemon-fix", {}).get("state") == "patched", 30, 0.2)
    check(ok, "the transition of the dropped client finished on its own")
    time.sleep(0.2)
    for s in (st2, st3):
        vs = victim_status(s)
        check(vs["bad"] == 0 and vs["v2"] > 0, f"victim {s[-15:]}: {vs}")
    check(d.alive(), "ulpd alive")
finally:
    for p in victims:
        p.kill()
        p.wait()
    d.stop()
    print(d.read_log())
