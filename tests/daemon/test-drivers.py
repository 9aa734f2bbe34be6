#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpd's driver threads (docs/daemon.md, "Drivers"): with two drivers and six targets
in one request, one of them a straggler (a thread inside outer() for seconds), the other
five are patched, reported done and run the new code while the straggler's thread is
still inside (the drivers take four jobs each); each pid gets its own progress, the
straggler's naming its thread; the results come in request order, each its own."""

import os
import subprocess
import threading
import time

from ulpdtest import SLOWDOWN, Client, Daemon, check, fail, need_root, patch_state, victim_status, wait_for

need_root()
VICTIM, PATCH = os.environ["VICTIM"], os.environ["PATCH"]

# an out-of-range --drivers is refused by name
for bad in ("0", "257", "x"):
    p = subprocess.run([os.environ["ULPD"], "--drivers", bad], capture_output=True, text=True, timeout=10)
    check(p.returncode == 2 and p.stderr.strip() == f"ulpd: invalid --drivers {bad} (1..256)",
          f"--drivers {bad} refused: {p.returncode} {p.stderr.strip()!r}")

d = Daemon(extra_args=("--no-recover", "--drivers", "2")).start()
HOLD_S = 4 * SLOWDOWN       # the straggler's one call of outer() lasts so long
N = 5
victims = []


def start_victim(*args, ready):
    st = os.path.join(d.tmp, f"victim{len(victims)}.status")
    p = subprocess.Popen([VICTIM, st, *map(str, args)])
    victims.append((p, st))
    if not wait_for(lambda: ready(victim_status(st) or {}), 5):
        fail("victim did not start")
    return p, st


try:
    strag, strag_st = start_victim(2, 200, HOLD_S * 1000, ready=lambda s: s.get("sleeper") == 1)
    t_hold = time.monotonic()
    others = [start_victim(2, 200, ready=lambda s: s.get("v1", 0) > 0) for _ in range(N)]
    pids = [strag.pid] + [p.pid for p, _ in others]

    progress, reply = [], {}

    def run():
        c = Client(d.socket, timeout=120)
        reply["r"] = c.request({"method": "apply", "pids": pids, "name": "daemon-fix.so",
                                "options": {"timeout_ms": HOLD_S * 4000}},
                               fd=os.open(PATCH, os.O_RDONLY), progress=progress.append)
        c.close()

    t = threading.Thread(target=run)
    t.start()

    def others_new():
        return all((victim_status(st) or {}).get("v2", 0) > 0 for _, st in others)

    new = wait_for(others_new, HOLD_S / SLOWDOWN)
    inside = (victim_status(strag_st) or {}).get("sleeper") == 1
    took = time.monotonic() - t_hold
    check(new and inside and took < HOLD_S,
          f"the other {N} run the new code {took:.2f}s in, while the straggler's thread is still inside "
          f"(its call lasts {HOLD_S}s): {[victim_status(st) for _, st in others]}")
    # Running the new code, each of the others is done once its completion ran (a step
    # later, on a loaded machine), while the straggler is still inside.
    states = []

    def settled():
        states[:] = [patch_state(d.socket, p, "daemon-fix") for p in pids]
        return states[0] == "transition" and all(s == "patched" for s in states[1:])
    wait_for(settled, max(HOLD_S - (time.monotonic() - t_hold) - 2 * SLOWDOWN, 1), 0.1)
    check(states[0] == "transition" and all(s == "patched" for s in states[1:]) and
          (victim_status(strag_st) or {}).get("sleeper") == 1 and t.is_alive(),
          f"while it waits, the straggler's transition runs and the others are done: {states}")
    log = d.read_log()
    check(all(f"apply of daemon-fix in pid {p} done" in log for p in pids[1:]) and
          f"apply of daemon-fix in pid {strag.pid} done" not in log,
          "ulpd logged the others' ends before the straggler's")

    t.join(HOLD_S * 4 + 60)
    check(not t.is_alive() and reply.get("r", {}).get("type") == "result",
          f"the request ended: {reply.get('r', {}).get('type')}")
    res = reply["r"]["results"]
    check([r["pid"] for r in res] == pids and all(r["errno"] == 0 and r["ok"] for r in res),
          f"one result per pid, in request order, each applied: "
          f"{[(r.get('pid'), r.get('errno'), r.get('error')) for r in res]}")
    check(res[0]["retries"] > 0 and res[0]["total_ms"] >= 1000 * HOLD_S / 2 and
          all(r["total_ms"] < 1000 * HOLD_S for r in res[1:]),
          f"the straggler's transition waited, the others' did not: "
          f"{[(r['pid'], r['retries'], r['total_ms']) for r in res]}")
    by_pid = {}
    for m in progress:
        by_pid.setdefault(m["pid"], []).append(m)
    check(set(by_pid) == set(pids), f"progress for every pid: {sorted(by_pid)} vs {sorted(pids)}")
    waiting = [m for m in by_pid[strag.pid] if m.get("straggler")]
    check(waiting and waiting[-1]["straggler"]["function"].startswith("outer") and
          waiting[-1]["switched"] < waiting[-1]["total"],
          f"the straggler's progress names its thread in outer(): {by_pid[strag.pid][-1:]}")
    check(all((victim_status(st) or {}).get("bad", 1) == 0 for _, st in [(strag, strag_st)] + others),
          "no victim saw a mixed-version call chain")
    print("ok: the straggler's driver ran the others' transitions to their end meanwhile")
finally:
    for p, _ in victims:
        p.kill()
        p.wait()
    d.stop()
