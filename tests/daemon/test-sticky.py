#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Sticky patches: apply --all --persist patches every running process of the pinned
build, records the wish, and ulpd applies it to processes started later (exec events
from the process connector), also after a restart; revert --all --persist ends it.
The victim runs from a copy with a build-id of its own, so that --all reaches this
test's processes only, never another run's (another checkout, another user)."""

import os
import shutil
import subprocess
import time

from ulpdtest import build_id, check, Client, Daemon, fail, need_root, skip, victim_status, wait_for

need_root()
VICTIM, PATCH, PATCH_SRC = os.environ["VICTIM"], os.environ["PATCH"], os.environ["PATCH_SRC"]
ROOT = os.environ["ULP_SOURCE_ROOT"]
d = Daemon().start()
procs = []
# the sticky patch's name is this run's: revert --all by name must reach no other run
NAME = "daemon-fix-" + os.path.basename(d.tmp).rsplit("-", 1)[-1]


def own_copy(path, bid):
    """A copy of path in d.tmp whose build-id note carries random bytes instead of bid."""
    data = open(path, "rb").read()
    old = bytes.fromhex(bid)
    if data.count(old) != 1:
        fail(f"the build-id of {path} is not found exactly once in the file")
    copy = os.path.join(d.tmp, os.path.basename(path))
    with open(copy, "wb") as f:
        f.write(data.replace(old, os.urandom(len(old))))
    shutil.copymode(path, copy)
    return copy


def start_victim():
    st = os.path.join(d.tmp, f"victim{len(procs)}.status")
    p = subprocess.Popen([VICTIM, st, "3", "200"])
    procs.append((p, st))
    return p, st


def state(c, pid):
    r = c.request({"method": "status", "pid": pid})
    for p in r.get("processes", []):
        for x in p["patches"]:
            if x["name"] == NAME:
                return x["state"]
    return None


try:
    bid = build_id(VICTIM)
    if not bid:
        fail("the victim has no build-id (it is linked with one; readelf is in binutils)")
    VICTIM = own_copy(VICTIM, bid)
    bid = build_id(VICTIM)
    sticky = os.path.join(d.tmp, NAME + ".so")
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-I", os.path.join(ROOT, "include"),
                        f'-DVICTIM_BUILD_ID="{bid}"', f'-DPATCH_NAME="{NAME}"', PATCH_SRC, "-o", sticky], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"cannot build the pinned patch: {r.stderr}")

    c = Client(d.socket)
    r = c.request({"method": "apply", "all": True, "name": "daemon-fix.so"}, fd=os.open(PATCH, os.O_RDONLY))
    check(r["type"] == "error" and "ULP_BUILD_ID" in r["error"], f"--all without a build-id pin refused: {r.get('error')}")

    early, early_st = start_victim()
    wait_for(lambda: (victim_status(early_st) or {}).get("v1", 0) > 0, 5)
    r = c.request({"method": "apply", "all": True, "persist": True, "name": NAME + ".so", "wait": True},
                  fd=os.open(sticky, os.O_RDONLY))
    check(r["type"] == "result", f"apply --all --persist answered: {r}")
    res = {x["pid"]: x for x in r["results"]}
    check(early.pid in res and res[early.pid]["ok"], f"the running victim was patched: {res.get(early.pid)}")
    pdir = os.path.join(d.state_dir, "patches")
    files = sorted(os.listdir(pdir))
    check(files == [NAME + ".so", NAME + ".wish"], f"wish recorded in the state dir: {files}")

    if "no exec events" in d.read_log():
        skip("the kernel's process connector gives no exec events here (needs CAP_NET_ADMIN in the initial namespaces)")

    late, late_st = start_victim()
    ok = wait_for(lambda: state(c, late.pid) == "patched", 10, 0.1)
    check(ok, f"a victim started after --persist got the patch (state {state(c, late.pid)})")
    wait_for(lambda: victim_status(late_st)["v2"] > 0, 3)
    vs = victim_status(late_st)
    check(vs["v2"] > 0 and vs["bad"] == 0, f"the late victim runs version 2, no mixed calls: {vs}")

    # the wish survives a restart
    c.close()
    check(d.stop() == 0, "ulpd stopped")
    d.start()
    c = Client(d.socket)
    later, later_st = start_victim()
    ok = wait_for(lambda: state(c, later.pid) == "patched", 10, 0.1)
    check(ok, "after a restart, a new victim still gets the sticky patch")

    # the field's new spelling, "sticky", is accepted as "persist" is
    r = c.request({"method": "revert", "all": True, "sticky": True, "name": NAME, "wait": True})
    pids = sorted(x["pid"] for x in r["results"] if x["ok"])
    check(pids == sorted([early.pid, late.pid, later.pid]), f"revert --all --sticky reverted every victim: {pids}")
    check(os.listdir(pdir) == [], "the wish is gone from the state dir")
    last, last_st = start_victim()
    time.sleep(1.5)
    check(state(c, last.pid) is None, "a victim started after the revert stays unpatched")
    for p, s in procs:
        vs = victim_status(s)
        check(vs["bad"] == 0, f"victim {p.pid}: no mixed-version call chain ({vs})")
finally:
    for p, _ in procs:
        p.kill()
        p.wait()
    d.stop()
    print(d.read_log())
