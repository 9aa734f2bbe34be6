#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Two tests' ulpds on one machine act on their own victims only (docs/testing.md, "Tests
share the machine"). This test's ulpd is killed in the middle of a transition (the
victim's sleeper thread sits in the replaced function), which leaves the transition
unfinished in the victim's control block. Then another test starts, as a separate
program from the suite's environment, a ulpd that recovers every process on the machine
(no --no-recover, no --recover-only): it must find this victim's block signed with a key
that is not its own and leave the transition alone. This test's ulpd, restarted with its
recovery limited to the victim, still finds the transition to take over and finishes
it: the victim runs version 2 and never saw a mix of versions."""

import os
import subprocess
import sys

from ulpdtest import SLOWDOWN, Client, Daemon, check, fail, need_root, patch_state, victim_status, wait_for

need_root()
VICTIM, PATCH = os.environ["VICTIM"], os.environ["PATCH"]
HERE = os.path.dirname(os.path.abspath(__file__))
SLEEP_MS = 4000 * SLOWDOWN

# What another test on the machine runs: its own helper, its own ulpd, recovering all.
OTHER_TEST = """
import sys
from ulpdtest import Client, Daemon
d = Daemon(extra_args=()).start()
c = Client(d.socket)
c.request({"method": "ping"})
c.close()
d.stop()
sys.stdout.write(d.read_log())
"""

d = Daemon().start()
st = os.path.join(d.tmp, "victim.status")
v = subprocess.Popen([VICTIM, st, "4", "200", str(SLEEP_MS)])
pid = v.pid
try:
    if not wait_for(lambda: (victim_status(st) or {}).get("sleeper") == 1, 5):
        fail("victim's sleeper did not start")
    c = Client(d.socket)
    r = c.request({"method": "apply", "pids": [pid], "name": "daemon-fix.so", "wait": False,
                   "options": {"timeout_ms": 120000}}, fd=os.open(PATCH, os.O_RDONLY))
    c.close()
    check(r["results"][0]["ok"], "apply started (no wait, timeout 120 s)")
    check(wait_for(lambda: patch_state(d.socket, pid, "daemon-fix") == "transition", 10),
          "the victim is in transition")
    d.kill9()
    check(v.poll() is None, "victim survives its ulpd's kill -9")

    # Another test's ulpd, started from the suite's environment (without this test's key).
    env = {k: x for k, x in os.environ.items() if k != "ULP_CONTROL_KEY"}
    env["PYTHONPATH"] = HERE
    other = subprocess.run([sys.executable, "-c", OTHER_TEST], env=env, capture_output=True, text=True,
                           timeout=60 * SLOWDOWN)
    log = other.stdout
    if other.returncode != 0:
        fail(f"the other test's ulpd: exit {other.returncode}:\n{other.stdout}{other.stderr}")
    mine = [line for line in log.splitlines() if f"pid {pid}" in line or f"process {pid} " in line]
    print("\n".join(["the other ulpd on this victim:"] + mine))
    check(not any("taking over" in line for line in mine), "the other test's ulpd did not take the transition over")
    check(any(f"cannot take over the transition in pid {pid}: the ulp control block of process {pid} carries no "
              "valid signature of this machine's ulp: not acted on" in line for line in mine),
          "the other test's ulpd found the block signed with another key and left it")
    check(v.poll() is None and victim_status(st)["bad"] == 0, "victim alive and consistent")

    # This test's ulpd, restarted: the transition is still there for it to finish.
    d.args = [a for a in d.args if a != "--no-recover"] + ["--recover-only", str(pid)]
    d.start()
    check(f"taking over the unfinished transition in pid {pid}" in d.read_log(),
          "this test's restarted ulpd takes the transition over")
    check(wait_for(lambda: v.poll() is not None or patch_state(d.socket, pid, "daemon-fix") == "patched",
                   SLEEP_MS / 1000 + 30, 0.2) and v.poll() is None,
          f"the transition completed (state {patch_state(d.socket, pid, 'daemon-fix')})")
    s1 = victim_status(st)
    check(wait_for(lambda: victim_status(st)["v2"] > s1["v2"], 5), f"victim runs version 2: {victim_status(st)}")
    check(victim_status(st)["bad"] == 0, "zero mixed-version call chains")
finally:
    v.kill()
    v.wait()
    d.stop()
