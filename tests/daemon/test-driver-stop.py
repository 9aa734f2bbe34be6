#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpd stopped (SIGTERM) while a driver runs a transition's last step: the driver
finishes the step before it stops (docs/daemon.md, "Drivers"), and the client that waits
gets the transition's real result, as logged, not "the transition stays in the target
and the next ulpd finishes it": it ended. The last step is the post-patch callback of a
patch whose callback spins (ulpd gives up on it after CB_MS: the patch stays applied,
with a warning), reached once the victim's thread inside outer() left; SIGTERM comes
while the callback runs."""

import os
import re
import subprocess
import threading
import time

from ulpdtest import (SLOWDOWN, Client, Daemon, check, fail, need_root, patch_state, thread_states,
                      victim_status, wait_for)

need_root()
VICTIM, SPIN_POST_PATCH = os.environ["VICTIM"], os.environ["SPIN_POST_PATCH"]
CB_MS = 3000 * SLOWDOWN     # the callback runs so long before ulpd gives up on it
SLEEP_MS = 1000 * SLOWDOWN  # the victim's thread inside outer(): the end comes in a later step

d = Daemon(extra_args=("--no-recover", "--callback-timeout", str(CB_MS))).start()
st = os.path.join(d.tmp, "victim.status")
v = subprocess.Popen([VICTIM, st, "2", "200", str(SLEEP_MS)])


def in_callback(pid):
    """A thread of pid runs the spinning callback, which names its thread."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == "spin-callback":
                    return True
    except OSError:
        pass
    return False


try:
    if not wait_for(lambda: (victim_status(st) or {}).get("sleeper") == 1, 5):
        fail("the victim's sleeper did not start")
    reply = {}

    def run():
        c = Client(d.socket, timeout=120)
        try:
            reply["r"] = c.request({"method": "apply", "pids": [v.pid], "name": "spin-post.so",
                                    "options": {"timeout_ms": 60000 * SLOWDOWN}},
                                   fd=os.open(SPIN_POST_PATCH, os.O_RDONLY))
        except OSError as e:
            reply["e"] = str(e)
        c.close()
    t = threading.Thread(target=run)
    t.start()
    # once the sleeper left outer(), the last step runs the post-patch callback in a
    # borrowed thread (maybe the main thread, which then writes no more status)
    if not wait_for(lambda: in_callback(v.pid), SLEEP_MS / 1000 / SLOWDOWN + 20, 0.02):
        fail(f"the post-patch callback did not start: {victim_status(st)}; ulpd says "
             f"{patch_state(d.socket, v.pid, 'spin-post')}; threads: {thread_states(v.pid)}\n{d.read_log()}")
    t_term = time.monotonic()
    rc = d.stop()
    t.join(60 * SLOWDOWN)
    log = d.read_log()
    m = re.search(rf"pid {v.pid}: (post callback failed to run: .*)", log)
    res = (reply.get("r", {}).get("results") or [{}])[0]
    print(f"SIGTERM to exit: {time.monotonic() - t_term:.2f}s; the reply: {reply}")
    check(reply.get("r", {}).get("type") == "result" and res.get("ok") and res.get("warnings") == [m and m.group(1)],
          f"the client got the transition's result as logged: {res.get('warnings') or reply}\n{log}")
    check(rc == 0 and f"apply of spin-post in pid {v.pid} done" in log and m and
          "post-patch callback did not return within" in m.group(1),
          f"ulpd finished the step, logged the end and stopped: {m.group(1) if m else None}")
    check(v.poll() is None, "the victim lives")
finally:
    v.kill()
    v.wait()
    d.stop()
