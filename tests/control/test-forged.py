#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Forged control blocks: processes of an unprivileged user (setpriv, uid 65534) map a
memfd named ulp-control with crafted contents. ulpctl --direct status, ulpd's status and
ulpd's recovery at start-up all survive, name each block's problem in one line, and
write nothing into those processes (each watches its own block)."""

import os
import shutil
import struct
import subprocess
import time

from ulpdtest import Daemon, Client, check, fail, need_root, scratch_dir, skip, victim_status, wait_for

need_root()
if not shutil.which("setpriv"):
    skip("setpriv (util-linux) is not installed")
ULPCTL, VICTIM, PATCH, FORGER = (os.environ[k] for k in ("ULPCTL", "VICTIM", "PATCH", "FORGER"))
DUMP = os.environ["DUMP_BLOCK"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
FORGER_ADDR = 0x6f0000000000
tmp = scratch_dir("ulp-forged-")
os.chmod(tmp, 0o777)
procs = []

# Header offsets (patcher/control.h), and the patch records in the dump's form.
H_TRANSITION, H_TARGET_STATE, H_N_PATCHES, H_N_FUNCS = 56, 52, 64, 68
PATCHES = 4096 + (79872 - 77824)
PATCH_SIZE = 616
P_STATE, P_FIRST_FUNC = 128, 136


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def real_block():
    """A block ulp made: the daemon victim patched with ulpctl --direct, dumped."""
    st = os.path.join(tmp, "victim.status")
    v = subprocess.Popen([VICTIM, st, "2", "200"])
    try:
        # running its code, libc loaded: an apply made while the dynamic loader was still
        # at work found no libc ("undefined symbol usleep not found in the target", under
        # load)
        if not wait_for(lambda: (victim_status(st) or {}).get("v1", 0) > 0, 10):
            fail("the victim did not start")
        r = run([ULPCTL, "--direct", "apply", "-p", str(v.pid), PATCH])
        check(r.returncode == 0, f"a real block to start from: {r.stdout}{r.stderr}")
        out = os.path.join(tmp, "real.bin")
        subprocess.run(["python3", DUMP, str(v.pid), out], check=True)
        with open(out, "rb") as f:
            return bytearray(f.read())
    finally:
        v.kill()
        v.wait()


def put(b, off, fmt, *vals):
    b = bytearray(b)
    struct.pack_into(fmt, b, off, *vals)
    return b


real = real_block()
n_patches = struct.unpack_from("<I", real, H_N_PATCHES)[0]
check(n_patches >= 1, "the real block has a patch record")
p0 = PATCHES
transition = put(put(put(real, H_TRANSITION, "<i", 0), H_TARGET_STATE, "<b", 1), p0 + P_STATE, "<I", 2)

# name, contents, forger mode, what status must say about it
cases = [
    ("first-func", put(real, p0 + P_FIRST_FUNC, "<I", 0x7fffffff), "fixself",
     "patch 0: its function records 2147483647..+"),
    ("transition-oob", put(real, H_TRANSITION, "<i", 40), "fixself", "transition patch 40 out of range"),
    ("huge-counts", put(real, H_N_FUNCS, "<I", 0xffffffff), "fixself", "counts out of range"),
    ("unterminated", put(real, p0, "128s", b"A" * 128), "fixself",
     "patch 0: its name is not a terminated printable string"),
    ("odd-generation", real, "odd", "busy: another process kept writing it"),
    # A copy taken between two equal even generations is consistent: then the block is
    # valid, and only not signed. Never a torn copy.
    ("churning", real, "churn", "busy: another process kept writing it|not signed"),
    ("self-wrong", real, "keep", f"it is mapped at 0x{FORGER_ADDR:x}"),
    # a real block's copy whose code areas are not mapped in the process
    ("no-areas", real, "noareas", "area 0 at 0x"),
    ("unsigned", transition, "fixself", None),
]

try:
    forgers = {}
    for name, data, mode, why in cases:
        path = os.path.join(tmp, name + ".bin")
        with open(path, "wb") as f:
            f.write(data)
        st = os.path.join(tmp, name + ".status")
        p = subprocess.Popen(NOBODY + [FORGER, path, st, mode])
        procs.append(p)
        forgers[name] = (p, st, why)
    for name, (p, st, why) in forgers.items():
        ok = wait_for(lambda: os.path.exists(st) and open(st).read().startswith("ready"), 10)
        check(ok, f"forger {name} (pid {p.pid}, uid 65534) is up")

    def untouched(name):
        p, st, _ = forgers[name]
        with open(st) as f:
            line = f.read()
        with open(f"/proc/{p.pid}/status") as f:
            tracer = [l for l in f if l.startswith("TracerPid:")][0].split()[1]
        return p.poll() is None and line.startswith("ready") and tracer == "0"

    # ulpctl --direct status, of all processes (root) and of each one.
    r = run([ULPCTL, "--direct", "status"])
    check(r.returncode == 0, f"ulpctl --direct status survives every block (exit {r.returncode}: {r.stderr})")
    for name, (p, st, why) in forgers.items():
        lines = [l for l in r.stdout.splitlines() if l.startswith(f"process {p.pid} ")]
        check(len(lines) == 1, f"{name}: listed once: {lines}")
        if name == "churning":
            check(why.split("|")[0] in lines[0] or "[control block not signed" in lines[0], f"{name}: {lines[0]}")
        elif why:
            check(f"ulp control block refused: " in lines[0] and why in lines[0], f"{name}: {lines[0]}")
            one = run([ULPCTL, "--direct", "status", "-p", str(p.pid)])
            msg = one.stderr.strip()
            check(one.returncode == 1 and len(msg.splitlines()) == 1 and f"process {p.pid}" in msg and why in msg,
                  f"{name}: status -p refuses in one line: {msg}")
        else:
            check("[control block not signed by this machine's ulp]" in lines[0], f"{name}: {lines[0]}")
    # The forger's own user sees the same through --direct.
    one = run(NOBODY + [ULPCTL, "--direct", "status", "-p", str(forgers["first-func"][0].pid)])
    check(one.returncode == 1 and "is malformed: patch 0" in one.stderr,
          f"uid 65534's own --direct status refuses it: {one.stderr.strip()}")

    # ulpd: status of all, and of one.
    d = Daemon(tmp=scratch_dir("ulp-forged-d-")).start()
    c = Client(d.socket)
    rep = c.status()
    byp = {p["pid"]: p for p in rep.get("processes", [])}
    for name, (p, st, why) in forgers.items():
        e = byp.get(p.pid)
        check(e is not None, f"ulpd lists {name}")
        if name == "churning":
            check("busy" in e.get("error", "") or e.get("trusted") is False, f"ulpd: {name}: {e}")
        elif why:
            check(why in e.get("error", ""), f"ulpd: {name}: {e.get('error')}")
        else:
            check(e.get("trusted") is False and not e.get("error"), f"ulpd: {name} is valid but not trusted")
    # a connection per request: ulpd closes one idle for 10 s, which a loaded machine reaches
    c.close()
    c = Client(d.socket)
    rep = c.request({"method": "status", "pid": forgers["huge-counts"][0].pid})
    check(rep.get("type") == "error" and "counts out of range" in rep.get("message", rep.get("error", "")),
          f"ulpd status -p refuses: {rep}")
    # root asks ulpd to revert the unsigned block's patch: refused, nothing written
    name0 = real[p0:p0 + 128].split(b"\0")[0].decode()
    c.close()
    c = Client(d.socket)
    rep = c.request({"method": "revert", "pids": [forgers["unsigned"][0].pid], "name": name0})
    res = rep.get("results", [{}])[0]
    check(not res.get("ok") and "carries no valid signature" in res.get("error", ""),
          f"root's revert through ulpd refuses the unsigned block: {res.get('error')}")
    c.close()
    check(d.alive(), "ulpd survived")
    d.stop()

    # Recovery at start-up over all of them, with a fresh state directory.
    rec = [a for name, (p, _, _) in forgers.items() for a in ("--recover-only", str(p.pid))]
    d2 = Daemon(extra_args=rec, tmp=scratch_dir("ulp-forged-r-")).start()
    c = Client(d2.socket)
    c.request({"method": "ping"})
    c.close()
    log = d2.read_log()
    for name, (p, st, why) in forgers.items():
        lines = [l for l in log.splitlines() if f"pid {p.pid}" in l or f"process {p.pid} " in l]
        if name == "unsigned":
            check(any("carries no valid signature" in l for l in lines), f"recovery: {name}: {lines}")
        elif name == "churning":
            # no transition in it: nothing to say unless it was busy
            check(all("taking over" not in l for l in lines), f"recovery: {name}: {lines}")
        else:
            check(all("taking over" not in l for l in lines) and any(why in l for l in lines),
                  f"recovery: {name}: {lines}")
    check(d2.alive(), "ulpd survived recovery over every forged block")
    d2.stop()

    time.sleep(0.1)
    for name in forgers:
        check(untouched(name), f"{name}: alive, untraced, its block unchanged")
finally:
    for p in procs:
        p.kill()
        p.wait()
    shutil.rmtree(tmp, ignore_errors=True)
