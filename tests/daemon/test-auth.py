#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Who may do what (SO_PEERCRED): an unprivileged user is refused root's processes,
non-dumpable ones and ulpd itself, with one clear line each, sees only their own
processes in status, and can patch their own process."""

import json
import os
import shutil
import subprocess
import sys
import time

from ulpdtest import Client, Daemon, check, need_root, victim_status, wait_for, fail

need_root()
if not shutil.which("setpriv"):
    fail("setpriv missing (util-linux, scripts/setup-deps.sh installs it)")
UID = 65534
VICTIM, PATCH = os.environ["VICTIM"], os.environ["PATCH"]
AS_USER = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]

d = Daemon().start()
shared = os.path.join(d.tmp, "shared")
os.mkdir(shared)
os.chmod(shared, 0o1777)
patch = os.path.join(shared, "daemon-fix.so")
shutil.copy(PATCH, patch)
os.chmod(patch, 0o644)
here = os.path.dirname(os.path.abspath(__file__))
procs = []


def user_requests(reqs):
    """Runs the requests as the unprivileged user; each is (message, patch path or None)."""
    code = ("import json, os, sys; sys.path.insert(0, sys.argv[1]); from ulpdtest import Client\n"
            "c = Client(sys.argv[2]); out = []\n"
            "for m, p in json.loads(sys.argv[3]):\n"
            "    out.append(c.request(m, fd=os.open(p, os.O_RDONLY) if p else None))\n"
            "print(json.dumps(out))\n")
    r = subprocess.run(AS_USER + [sys.executable, "-c", code, here, d.socket, json.dumps(reqs)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        fail(f"client as uid {UID} failed: {r.stderr}")
    return json.loads(r.stdout)


def start_victim(as_user, *extra):
    st = os.path.join(shared, f"victim{len(procs)}.status")
    cmd = ([*AS_USER] if as_user else []) + [VICTIM, st, "3", "200", "0", *extra]
    p = subprocess.Popen(cmd)
    procs.append(p)
    if not wait_for(lambda: (victim_status(st) or {}).get("v1", 0) > 0, 5):
        fail("victim did not start")
    return p, st


def uids_of(pid):
    """The set of real, effective, saved and fs uids of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return {int(x) for x in line.split()[1:]}
    except OSError:
        return None
    return None


def apply_req(pid):
    return [{"method": "apply", "pids": [pid], "name": "daemon-fix.so", "wait": True}, patch]


try:
    root_victim, root_st = start_victim(False)
    user_victim, user_st = start_victim(True)
    nodump_victim, _ = start_victim(True, "nodump")

    out = user_requests([
        [{"method": "status", "pid": 1}, None],
        apply_req(1),
        apply_req(root_victim.pid),
        apply_req(d.proc.pid),
        apply_req(nodump_victim.pid),
        [{"method": "apply", "all": True, "persist": True, "name": "daemon-fix.so"}, patch],
    ])
    check(out[0]["type"] == "error" and out[0]["errno"] == 1 and "\n" not in out[0]["error"],
          f"status of pid 1 refused: {out[0]['error']}")
    for i, what in [(1, "pid 1"), (2, "root's victim"), (3, "ulpd itself"), (4, "a non-dumpable process")]:
        res = out[i]["results"][0]
        check(not res["ok"] and res["errno_name"] == "EPERM", f"apply to {what} refused: {res['error']}")
    check("not dumpable" in out[4]["results"][0]["error"], "the refusal says why (not dumpable)")
    check(out[5]["type"] == "error" and out[5]["errno"] == 1, f"--persist refused: {out[5]['error']}")
    time.sleep(0.1)
    check(victim_status(root_st)["v2"] == 0, "root's victim untouched")
    log = d.read_log()
    check(log.count("refused") >= 4, "refusals logged")

    # root patches its victim; the user must not see it in status
    c = Client(d.socket)
    r = c.request({"method": "apply", "pids": [root_victim.pid], "name": "x.so", "wait": True},
                  fd=os.open(patch, os.O_RDONLY))
    check(r["results"][0]["ok"], "root may patch its own victim")
    r = c.request({"method": "apply", "pids": [d.proc.pid], "name": "x.so", "wait": True},
                  fd=os.open(patch, os.O_RDONLY))
    check(not r["results"][0]["ok"] and "ulpd itself" in r["results"][0]["error"], "not even root patches ulpd")

    out = user_requests([apply_req(user_victim.pid), [{"method": "status"}, None]])
    res = out[0]["results"][0]
    check(res["ok"], f"the user patches their own process: {json.dumps(res)}")
    # Other users of the machine may run patched processes as this uid too: every one
    # listed must be this uid's, and root's patched victim must not be among them.
    pids = [p["pid"] for p in out[1]["processes"]]
    foreign = [p for p in pids if uids_of(p) not in (None, {UID})]
    check(user_victim.pid in pids and root_victim.pid not in pids and not foreign,
          f"the user's status shows only their own processes: {pids}, not theirs: {foreign}")
    wait_for(lambda: victim_status(user_st)["v2"] > 0, 3)
    vs = victim_status(user_st)
    check(vs["v2"] > 0 and vs["bad"] == 0, f"the user's victim runs version 2: {vs}")
    out = user_requests([[{"method": "revert", "pids": [user_victim.pid], "name": "daemon-fix", "wait": True}, None]])
    check(out[0]["results"][0]["ok"], "the user reverts it")
finally:
    for p in procs:
        p.kill()
        p.wait()
    d.stop()
    print(d.read_log())
