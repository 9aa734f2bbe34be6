#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpd killed in the middle of a transition with a long timeout, whose sleeper thread
stays inside the replaced function for longer than the default timeout: the restarted
ulpd takes the transition over with the timeout of the apply (not the default 30 s,
at which it would reverse), and when the sleeper returns the victim is alive, runs the
new version, and saw no mixed-version call chain. SIGKILL and SIGTERM both."""

import os
import signal
import subprocess
import sys
import time

from ulpdtest import Client, Daemon, check, need_root, patch_state, victim_status, wait_for, fail

need_root()
VICTIM, PATCH = os.environ["VICTIM"], os.environ["PATCH"]
# Longer than ULP_DEFAULT_TIMEOUT_MS (30 s) after the takeover: the old ulpd would reverse.
SLEEP_MS = int(os.environ.get("TAKEOVER_SLEEP_MS", "36000"))
SIG = signal.SIGTERM if (sys.argv[1:] or ["kill"])[0] == "term" else signal.SIGKILL
d = Daemon().start()
st = os.path.join(d.tmp, "victim.status")
v = subprocess.Popen([VICTIM, st, "4", "200", str(SLEEP_MS)])


def state():
    return patch_state(d.socket, v.pid, "daemon-fix")


try:
    if not wait_for(lambda: (victim_status(st) or {}).get("sleeper") == 1, 5):
        fail("victim's sleeper did not start")
    t0 = time.monotonic()
    c = Client(d.socket)
    r = c.request({"method": "apply", "pids": [v.pid], "name": "daemon-fix.so", "wait": False,
                   "options": {"timeout_ms": 120000}}, fd=os.open(PATCH, os.O_RDONLY))
    check(r["results"][0]["ok"], "apply started (--no-wait, timeout 120 s)")
    time.sleep(1)
    c.close()
    check(state() == "transition", "the target is in transition")

    if SIG == signal.SIGKILL:
        d.kill9()
    else:
        d.stop(SIG)
    check(v.poll() is None, f"victim survives ulpd's {SIG.name}")
    time.sleep(2)   # the restarted ulpd's default deadline lands after the sleeper's return
    d.args = [a for a in d.args if a != "--no-recover"] + ["--recover-only", str(v.pid)]
    d.start()
    inside = (victim_status(st) or {}).get("sleeper") == 1
    print("the sleeper was %s inside at the takeover" % ("still" if inside else "NOT (loaded machine)"))
    c = None
    check("taking over the unfinished transition in pid %d" % v.pid in d.read_log(),
          "the restarted ulpd found the unfinished transition")
    left = SLEEP_MS / 1000 - (time.monotonic() - t0)
    ok = wait_for(lambda: v.poll() is not None or state() not in ("transition", "unreachable"), left + 20, 0.2) and state() == "patched"
    check(v.poll() is None, f"victim alive after the taken-over transition (returncode {v.poll()})")
    check(ok, f"the transition completed after the restart (state {state()})")
    time.sleep(1)
    check(v.poll() is None, "victim still alive a second later")
    s1 = victim_status(st)
    wait_for(lambda: victim_status(st)["v2"] > s1["v2"], 3)
    vs = victim_status(st)
    check(vs["v2"] > s1["v2"] and vs["sleeper"] == 0, f"victim runs version 2: {s1} -> {vs}")
    check(vs["bad"] == 0, "zero mixed-version call chains")
    check("reversed" not in d.read_log(), "the transition was not reversed")
finally:
    v.kill()
    v.wait()
    d.stop()
    print(d.read_log())
