#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""kill -9 of ulpd in the middle of a transition: the target keeps running unharmed,
and a restarted ulpd finds the unfinished transition in the target and completes it,
with zero mixed-version call chains seen by the victim."""

import os
import subprocess
import time

from ulpdtest import Client, Daemon, check, need_root, patch_state, victim_status, wait_for, fail

need_root()
VICTIM, PATCH = os.environ["VICTIM"], os.environ["PATCH"]
d = Daemon().start()
st = os.path.join(d.tmp, "victim.status")
# 4 workers, and a sleeper inside outer() for 4 s: the transition cannot end before.
v = subprocess.Popen([VICTIM, st, "4", "200", "4000"])


def state():
    return patch_state(d.socket, v.pid, "daemon-fix")


try:
    if not wait_for(lambda: (victim_status(st) or {}).get("sleeper") == 1, 5):
        fail("victim's sleeper did not start")
    c = Client(d.socket)
    r = c.request({"method": "apply", "pids": [v.pid], "name": "daemon-fix.so", "wait": False},
                  fd=os.open(PATCH, os.O_RDONLY))
    check(r["results"][0]["ok"], "apply started (--no-wait)")
    time.sleep(0.5)
    check(state() == "transition", "the target is in transition")
    c.close()

    d.kill9()
    check(v.poll() is None, "victim survives ulpd's kill -9")
    s1 = victim_status(st)
    wait_for(lambda: sum(victim_status(st)[k] for k in ("v1", "v2")) > s1["v1"] + s1["v2"], 3)
    s2 = victim_status(st)
    check(s2["v1"] + s2["v2"] > s1["v1"] + s1["v2"], f"victim keeps running without a daemon ({s1} -> {s2})")
    with open(f"/proc/{v.pid}/status") as f:
        tracer = [l for l in f if l.startswith("TracerPid:")][0].split()[1]
    check(tracer == "0", "no tracer left on the victim")

    # Recovery looks at every process of the host; on a shared test machine only ours.
    d.args = [a for a in d.args if a != "--no-recover"] + ["--recover-only", str(v.pid)]
    d.start()
    check("taking over the unfinished transition in pid %d" % v.pid in d.read_log(),
          "the restarted ulpd found the unfinished transition")
    ok = wait_for(lambda: state() == "patched", 15, 0.2)
    check(ok, f"the transition completed after the restart (state {state()})")
    wait_for(lambda: victim_status(st)["v2"] > 0, 3)
    vs = victim_status(st)
    check(vs["v2"] > 0, f"victim runs version 2: {vs}")
    check(vs["bad"] == 0, "zero mixed-version call chains")
    check(wait_for(lambda: f"resume of daemon-fix in pid {v.pid} done" in d.read_log(), 10),
          "the log says the resume finished")
finally:
    v.kill()
    v.wait()
    d.stop()
    print(d.read_log())
