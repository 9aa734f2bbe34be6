#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpctl as an operator meets it, through a real ulpd and --direct, with exact lines:
status shows the processes carrying a patch (--all the rest) and an unprivileged user
only their own; status --missing lists the processes that load what a patch targets but
lack it (exit 1); check takes several -p; revert --all of a name nobody carries exits 1;
the line for a pid with no process, and for a process the caller may not trace, is one
line on both paths; the progress line on a terminal names the worst straggler; every
--json output matches docs/ulpctl.schema.json (docs/json.md)."""

import calendar
import os
import re
import shutil
import subprocess
import time

from fleettest import AS_USER, UID, Victims, own_copy, pinned_patch, ulpctl, valid
from ulpdtest import SLOWDOWN, Daemon, check, fail, need_root, patch_state, wait_for

need_root()
for tool in ("setpriv", "script"):
    if not shutil.which(tool):
        fail(f"{tool} missing (util-linux / bsdutils, scripts/setup-deps.sh installs them)")
d = Daemon().start()
NAME = "opfix-" + os.path.basename(d.tmp).rsplit("-", 1)[-1]
victim = own_copy(os.environ["VICTIM"], d.tmp, "opvictim")
patch = pinned_patch(victim, NAME, os.path.join(d.tmp, NAME + ".so"))
shared = os.path.join(d.tmp, "shared")
os.mkdir(shared)
os.chmod(shared, 0o1777)
vs = Victims(shared, victim)
sock = d.socket


def run(*args, rc=None, user=False):
    r, out, err = ulpctl(sock, *args, user=user)
    if rc is not None and r != rc:
        fail(f"ulpctl {' '.join(args)}: exit {r}, not {rc}; stdout {out!r} stderr {err!r}")
    return r, out, err


def pids_of(doc):
    return [p["pid"] for p in doc["processes"]]


try:
    # apply --all before any process fits: not an error, and --json stays one document
    _, out, _ = run("apply", "--all", patch, rc=0)
    check(out == f"no running process fits {NAME}.so\n", f"apply --all that fits nothing says so: {out!r}")
    _, out, _ = run("apply", "--all", patch, "--json", rc=0)
    check(valid("results", out)["results"] == [], f"...with --json, no results: {out.strip()}")

    v1, _ = vs.start()
    v2, _ = vs.start()
    v1, v2 = v1.pid, v2.pid

    # --json of apply, of check on several processes, of status, info: by the schema
    _, out, _ = run("apply", "-p", str(v1), patch, "--json", rc=0)
    rep = valid("report", out)
    check(rep["ok"] and rep["patch"] == NAME and rep["pid"] == v1, f"apply --json is a report: {out.strip()}")
    for direct in ([], ["--direct"]):
        _, out, err = run(*direct, "check", "-p", str(v1), "-p", str(v2), patch, "--json", rc=1)
        res = valid("results", out)["results"]
        check([x["pid"] for x in res] == [v1, v2] and res[0]["errno_name"] == "EEXIST",
              f"check {' '.join(direct)} with two -p: one report each, in order: {[(x['pid'], x['errno_name']) for x in res]}")
        _, out, err = run(*direct, "check", "-p", str(v1), "-p", str(v2), patch, rc=1)
        check(f"ulpctl: patch {NAME} is already applied to process {v1}\n" in err,
              f"check {' '.join(direct)} with two -p: the line of the first: {err.strip()}")
        check(re.search(rf"(^{NAME} would apply to process {v2} now \(3 threads checked\)$)", out, re.M) is not None
              or re.search(rf"^ulpctl: \d thread\(s\) would block the transition now$", err, re.M) is not None,
              f"...and the second's outcome: {out.strip()} {err.strip()}")
    _, out, _ = run("info", patch, "--json", rc=0)
    check(valid("info", out)["name"] == NAME, "info --json matches the schema")

    # status by default: the processes with an applied patch; v2 has no ulp state at all
    for direct in ([], ["--direct"]):
        _, out, _ = run(*direct, "status", "--json", rc=0)
        doc = valid("status", out)
        check(v1 in pids_of(doc) and v2 not in pids_of(doc), f"status {' '.join(direct)} --json lists v1, not v2")
        addr = [p for p in doc["processes"] if p["pid"] == v1][0]["patches"][0]["functions"][0]["addr"]
        check(re.fullmatch(r"0x[0-9a-f]+", addr) is not None, f"addresses are hex strings: {addr}")
        _, out, _ = run(*direct, "status", "-p", str(v1), "--json", rc=0)
        check(pids_of(valid("status", out)) == [v1], f"status {' '.join(direct)} -p --json: the one process")

    # --missing: v2 loads what the patch targets and lacks it
    _, out, _ = run("status", "--missing", patch, rc=1)
    check(out == f"process {v2} (opvictim): {NAME} not applied\n", f"status --missing lists v2 alone, exit 1: {out!r}")
    _, out, _ = run("status", "--missing", patch, "--json", rc=1)
    doc = valid("missing", out)
    check(doc["patch"] == NAME and pids_of(doc) == [v2], f"status --missing --json: {out.strip()}")
    _, out, _ = run("status", "--missing", patch, "--missing", patch, "--json", rc=1)
    check(len(valid("missing_results", out)["results"]) == 2, "two --missing: one object each")
    run("apply", "-p", str(v2), patch, rc=0)
    _, out, _ = run("status", "--missing", patch, rc=0)
    check(out == f"every process that loads what {NAME} patches carries it\n", f"none missing: exit 0, {out!r}")
    v3, _ = vs.start(sleeper_ms=min(1500 * SLOWDOWN, 8000))
    v3 = v3.pid
    _, out, _ = run("status", "--missing", patch, rc=1)
    check(out == f"process {v3} (opvictim): {NAME} not applied\n", f"a process started later is missing it: {out!r}")
    _, out, err = run("status", "--missing", os.environ["PATCH"], rc=1)
    check(err.startswith(f"ulpctl: {os.environ['PATCH']}: patch daemon-fix does not pin the main executable's build-id"),
          f"--missing of a patch without ULP_BUILD_ID says so: {err.strip()}")

    # the progress line on a terminal: v3's sleeper holds outer() for seconds
    r = subprocess.run(["script", "-qec", f"{shutil.which('env')} ULP_SOCKET={sock} {os.environ['ULPCTL']} "
                        f"apply -p {v3} {patch}", "/dev/null"], capture_output=True, timeout=120 * SLOWDOWN)
    check(r.returncode == 0, f"apply on a terminal: {r.returncode}")
    tty = r.stdout.decode(errors="replace")   # bytes: text mode would turn \r into \n
    line = re.search(rf"\r  process {v3}: \d+/\d+ threads switched; waiting for thread \d+ \(opvictim\) in outer\+0x[0-9a-f]+\x1b\[K",
                     tty)
    check(line is not None, f"the progress line names the straggler: {line.group(0)[1:-3] if line else tty!r}")
    _, out, err = run("status", "--missing", patch)
    check(f"process {v3}" not in out, "v3 is no longer missing the patch")

    # sentences, not errno text
    nosock = os.path.join(d.tmp, "nosock")
    r, _, err = ulpctl(nosock, "status")
    check(r == 1 and err == f"ulpctl: no ulpd answers on {nosock} (there is no socket there); start ulpd, or use --direct\n",
          f"no daemon: {err.strip()}")
    for direct in ([], ["--direct"]):
        _, _, err = run(*direct, "apply", "-p", str(v1), os.path.join(d.tmp, "none.so"), rc=1)
        check(err == f"ulpctl: cannot open the patch file {d.tmp}/none.so: there is no such file\n",
              f"apply {' '.join(direct)} of a missing file: {err.strip()}")

    # the wrong pid: one line, through ulpd and --direct, for apply and check
    p = subprocess.Popen(["true"])
    p.wait()
    gone = p.pid
    for direct in ([], ["--direct"]):
        for verb in ("apply", "check"):
            _, _, err = run(*direct, verb, "-p", str(gone), patch, rc=1)
            check(err == f"ulpctl: no process with pid {gone}\n", f"{verb} {' '.join(direct)} of no process: {err!r}")

    # a thread's id is no process: ulpd reads its Tgid from /proc/TID/status
    tid = next(int(t) for t in os.listdir(f"/proc/{v2}/task") if int(t) != v2)
    _, _, err = run("apply", "-p", str(tid), patch, rc=1)
    check(err == f"ulpctl: no process with pid {tid}\n", f"apply to thread {tid} of {v2}: {err!r}")

    for direct in ([], ["--direct"]):
        _, out, _ = run(*direct, "status", "-p", str(os.getpid()), rc=0)
        check(out == f"process {os.getpid()} carries no ulp state\n", f"status {' '.join(direct)} -p of a process without ulp: {out!r}")

    # revert: by default status no longer lists a process whose patches are all reverted
    run("revert", "-p", str(v1), NAME, rc=0)
    for direct in ([], ["--direct"]):
        _, out, _ = run(*direct, "status", "--json", rc=0)
        check(v1 not in pids_of(valid("status", out)), f"status {' '.join(direct)}: v1 (all reverted) not listed")
        _, out, _ = run(*direct, "status", "--all", "--json", rc=0)
        check(v1 in pids_of(valid("status", out)), f"status {' '.join(direct)} --all: v1 listed")
        _, out, _ = run(*direct, "status", rc=0)
        check(f"process {v1} " not in out and
              re.search(rf"^process {v2} \(opvictim\)\n  {NAME}: patched, applied \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC by uid 0$",
                        out, re.M) is not None,
              f"status {' '.join(direct)} as lines: v2 with its patch, when and for whom, not v1")

    # revert --all of a name nobody carries: exit 1, one line; --json: no results
    for direct in ([], ["--direct"]):
        _, out, err = run(*direct, "revert", "--all", NAME + "-typo", rc=1)
        check(out == "" and err == f"ulpctl: no process carries {NAME}-typo\n",
              f"revert {' '.join(direct)} --all of a name nobody carries: {err!r}")
        _, out, err = run(*direct, "revert", "--all", NAME + "-typo", "--json", rc=1)
        check(valid("results", out)["results"] == [], f"...with --json: {out.strip()}")

    # an unprivileged user: their own process, patched through ulpd; root's stay unseen
    u, _ = vs.start(prefix=AS_USER)
    u = u.pid
    _, out, err = run("apply", "-p", str(u), patch, "--json", user=True, rc=0)
    check(valid("report", out)["ok"], f"uid {UID} patches their own process through ulpd")
    _, out, _ = run("status", "--json", rc=0)
    pat = {p["pid"]: p["patches"][0] for p in valid("status", out)["processes"] if p["pid"] in (u, v2)}
    age = time.time() - calendar.timegm(time.strptime(pat[u]["applied_at"], "%Y-%m-%dT%H:%M:%SZ"))
    check(pat[u]["applied_by_uid"] == UID and pat[v2]["applied_by_uid"] == 0 and -5 < age < 120 * SLOWDOWN,
          f"status says who applied each patch, and when: {pat[u]['applied_by_uid']}, {pat[v2]['applied_by_uid']}, {age:.0f} s ago")
    for direct in ([], ["--direct"]):
        _, out, err = run(*direct, "status", "--json", user=True, rc=0)
        seen = pids_of(valid("status", out))
        check(u in seen and v2 not in seen and v3 not in seen,
              f"uid {UID}'s status {' '.join(direct)} shows their process ({u}), not root's ({v2}, {v3})")
    _, out, _ = run("status", "--missing", patch, "--json", user=True, rc=0)
    check(pids_of(valid("missing", out)) == [], f"uid {UID}'s --missing sees only their own processes: {out.strip()}")
    _, _, err = run("status", "-p", str(v2), user=True, rc=1)
    check(err == f"ulpctl: not allowed to trace process {v2} (the kernel's ptrace access check for this user: "
          "its user ids are not all yours)\n", f"uid {UID}'s status -p of root's, without raw errno text: {err.strip()}")
    # the ptrace refusal: one line, the same through ulpd and --direct, for every verb
    for verb, arg in (("apply", patch), ("check", patch), ("revert", NAME), ("status", None)):
        lines = []
        for direct in ([], ["--direct"]):
            _, _, err = run(*direct, verb, "-p", str(v2), *([arg] if arg else []), user=True, rc=1)
            lines.append(err)
        check(lines[0] == lines[1] == f"ulpctl: not allowed to trace process {v2} (the kernel's ptrace access check "
              "for this user: its user ids are not all yours)\n",
              f"uid {UID}'s {verb} of root's process: the same line through ulpd and --direct: {lines}")

    for pid in (v2, v3, u):
        check(wait_for(lambda: patch_state(sock, pid, NAME) == "patched", 5), f"process {pid} still patched")
finally:
    vs.kill()
check(d.stop() == 0, "ulpd stopped cleanly")
shutil.rmtree(d.tmp, ignore_errors=True)
