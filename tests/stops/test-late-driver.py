#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A thread left late by an operation of ulpd (a vfork parent in D state) stays traced by
that operation's driver until it stops (docs/stops.md); the next operation on its process
goes to the same driver, which takes the thread over (docs/daemon.md, "Drivers").

With --drivers 2: uid HOSTILE's four transitions, held open by threads inside outer(),
fill one driver; root's apply with a 1 s deadline to HOSTILE's process V, whose vforker
is in D, goes to the second driver and is refused, leaving the vforker late there. One
of HOSTILE's transitions ends (its process killed), so the first driver, the only one its
share allows, has room. HOSTILE's apply to V during the same vfork then goes to the
driver that traces the vforker, waits for the vfork and succeeds; V runs the patch.
Before, it went to the first driver, which found the vforker traced by another."""

import os
import re
import shutil
import signal
import subprocess
import sys
import json
import select
import time

sys.path.insert(0, os.path.join(os.environ["ULP_SOURCE_ROOT"], "tests", "daemon"))
from ulpdtest import SLOWDOWN, Client, Daemon, check, fail, need_root, patch_state, skip, victim_status, wait_for  # noqa: E402

need_root()
if not shutil.which("setpriv"):
    skip("setpriv missing (util-linux)")
VICTIM, PATCH = os.environ["VICTIM"], os.environ["PATCH"]
DVICTIM, DPATCH = os.environ["DAEMON_VICTIM"], os.environ["DAEMON_PATCH"]
CLIENT = [sys.executable, os.path.join(os.environ["ULP_SOURCE_ROOT"], "tests", "daemon", "dos-client.py")]
HOSTILE = 65534
VFORK_MS = 8000 * SLOWDOWN

d = Daemon(extra_args=("--no-recover", "--drivers", "2")).start()
shared = os.path.join(d.tmp, "shared")
os.mkdir(shared)
os.chmod(shared, 0o1777)
procs = []


def as_uid(uid):
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def spawn(args, **kw):
    p = subprocess.Popen(as_uid(HOSTILE) + args, **kw)
    procs.append(p)
    return p


def report(p, timeout):
    r, _, _ = select.select([p.stdout], [], [], timeout)
    line = p.stdout.readline() if r else ""
    if not line:
        fail(f"no report from the client {p.args[-3:]} within {timeout}s")
    return json.loads(line)


def tick(log):
    """The victim's last whole line: {'compute': C, 'vforks': V, 'vtid': T, ...}."""
    try:
        lines = open(log).read().splitlines()[-2:-1]
    except OSError:
        return {}
    return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", lines[0])} if lines else {}


try:
    stragglers = []
    for i in range(4):
        st = os.path.join(shared, f"straggler{i}.status")
        stragglers.append((spawn([DVICTIM, st, "1", "200", str(3600 * 1000)]), st))
    vlog = os.path.join(shared, "v.log")
    v = spawn([VICTIM, "2", str(VFORK_MS)], stdout=open(vlog, "w"), stderr=subprocess.STDOUT)
    if not wait_for(lambda: all((victim_status(st) or {}).get("sleeper") == 1 for _, st in stragglers) and
                    tick(vlog).get("vtid", 0) > 0, 10):
        fail("the victims did not start")
    spids = [p.pid for p, _ in stragglers]
    h = spawn(CLIENT + ["apply", d.socket, DPATCH, "nowait", *map(str, spids)], stdout=subprocess.PIPE, text=True)
    hr = report(h, 60 * SLOWDOWN)
    # each seen in transition once: on a loaded machine a look may find ulpd too busy to
    # answer it ("unreachable")
    seen = set()

    def all_seen():
        seen.update(p for p in spids if patch_state(d.socket, p, "daemon-fix") == "transition")
        return len(seen) == len(spids)
    check(hr["errors"] == [None] * 4 and wait_for(all_seen, 10, 0.1),
          f"HOSTILE's four transitions wait on one driver: {hr['errors']}, "
          f"{[patch_state(d.socket, p, 'daemon-fix') for p in spids]}")

    vtid = tick(vlog)["vtid"]

    def vstate():
        try:
            return open(f"/proc/{v.pid}/task/{vtid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return "?"
    os.kill(v.pid, signal.SIGUSR1)
    if not wait_for(lambda: vstate() == "D", 10):
        fail(f"the vforker did not enter D state ({vstate()})")
    t_vfork = time.monotonic()

    c = Client(d.socket)
    r = c.request({"method": "apply", "pids": [v.pid], "options": {"timeout_ms": 1000}},
                  fd=os.open(PATCH, os.O_RDONLY))
    c.close()
    err = (r.get("results") or [{}])[0].get("error") or ""
    check("the transition could not start within 1000 ms" in err and vstate() == "D",
          f"root's apply with a 1 s deadline, on the second driver, is refused during the vfork: {err}")

    stragglers[0][0].kill()
    if not wait_for(lambda: f"in pid {spids[0]} failed" in d.read_log(), 30):
        fail("the killed straggler's transition did not end")

    t = time.monotonic()
    a = spawn(CLIENT + ["apply", d.socket, PATCH, "wait", str(v.pid)], stdout=subprocess.PIPE, text=True)
    ar = report(a, VFORK_MS / 1000 + 60 * SLOWDOWN)
    in_vfork = ar["seconds"] > 0 and time.monotonic() - t_vfork < VFORK_MS / 1000
    check(ar["errors"] == [None] and ar["error"] is None,
          f"HOSTILE's apply during the vfork waited for it and succeeded in {ar['seconds']:.2f}s: {ar['errors']}")
    check(wait_for(lambda: tick(vlog).get("compute") == 30, 5), f"V runs the patch: {tick(vlog)}")
    check(vstate() != "t" and "TracerPid:\t0" in open(f"/proc/{v.pid}/task/{vtid}/status").read(),
          "the vforker is neither stopped nor traced afterwards")
    print(f"(the apply was made {'during' if in_vfork else 'after'} the vfork)")
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    d.stop()
