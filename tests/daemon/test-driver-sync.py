#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A start the loop waits for (taking over after a restart, a sticky patch on a new
process, a patch directory's revert) never waits behind transitions holding every
driver's slots (docs/daemon.md, "Drivers"): ulpd killed with five transitions open, each
held by a thread inside outer() for HOLD_S; the next ulpd, with one driver (four slots),
takes all five over and answers a ping while every one of them still waits, and each
ends patched once its thread left. Before, the fifth start waited in the queue for a
slot, and the loop with it: nothing was served until a thread left outer()."""

import os
import subprocess
import time

from ulpdtest import SLOWDOWN, Client, Daemon, check, fail, need_root, patch_state, victim_status, wait_for

need_root()
VICTIM, PATCH = os.environ["VICTIM"], os.environ["PATCH"]
N = 5                       # one more than a driver's slots (DRIVER_JOBS_MAX)
HOLD_S = 8 * SLOWDOWN       # each victim's one call of outer() lasts so long

d = Daemon().start()
victims = []
try:
    for i in range(N):
        st = os.path.join(d.tmp, f"victim{i}.status")
        victims.append((subprocess.Popen([VICTIM, st, "2", "200", str(HOLD_S * 1000)]), st))
    t_hold = time.monotonic()
    if not wait_for(lambda: all((victim_status(st) or {}).get("sleeper") == 1 for _, st in victims), 5):
        fail("the victims' sleepers did not start")
    pids = [v.pid for v, _ in victims]
    c = Client(d.socket)
    r = c.request({"method": "apply", "pids": pids, "name": "daemon-fix.so", "wait": False,
                   "options": {"timeout_ms": HOLD_S * 4000}}, fd=os.open(PATCH, os.O_RDONLY))
    c.close()
    check(r.get("type") == "result" and all(x["ok"] for x in r["results"]),
          f"{N} applies started: {[x.get('error') for x in r.get('results', [])]}")
    # Waited for: under load a status right after the answer has seen one of them without
    # the patch yet.
    check(wait_for(lambda: all(patch_state(d.socket, p, "daemon-fix") == "transition" for p in pids), 5),
          f"all {N} wait for their sleeper: {[patch_state(d.socket, p, 'daemon-fix') for p in pids]}")
    d.kill9()

    d.args = [a for a in d.args if a != "--no-recover"] + ["--drivers", "1"]
    for p in pids:
        d.args += ["--recover-only", str(p)]
    t = time.monotonic()
    d.start(wait=False)

    def pong():
        try:
            c = Client(d.socket, timeout=1)
            ok = c.request({"method": "ping"}).get("type") == "pong"
            c.close()
            return ok
        except OSError:
            return False
    served = wait_for(pong, 5, 0.1)
    took = time.monotonic() - t
    inside = [(victim_status(st) or {}).get("sleeper") == 1 for _, st in victims]
    log = d.read_log()
    check(served and all(inside), f"the restarted ulpd answered ({served}, {took:.2f}s) while all {N} sleepers "
          f"are still inside outer() ({HOLD_S - (time.monotonic() - t_hold):.1f}s left): {inside}")
    check(all(f"taking over the unfinished transition in pid {p}" in log for p in pids),
          f"it took over all {N} with one driver")

    left = HOLD_S - (time.monotonic() - t_hold)
    done = wait_for(lambda: all(patch_state(d.socket, p, "daemon-fix") == "patched" for p in pids),
                    left / SLOWDOWN + 30, 0.2)
    check(done, f"each ended patched: {[patch_state(d.socket, p, 'daemon-fix') for p in pids]}")
    check(all(v.poll() is None and (victim_status(st) or {}).get("bad", 1) == 0 for v, st in victims),
          "every victim lives and saw no mixed-version call chain")
finally:
    for v, _ in victims:
        v.kill()
        v.wait()
    d.stop()
