#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""status of every process, through a real ulpd and with --direct, when the listing is
larger than one message of the protocol (256 KiB, docs/limits.md): 300 processes of the
processes benchmark carrying its library patch (run as another user, so that the
user's own status needs more access proofs than one request carries) and 6 carrying a
patch of 1000 functions. Every pid is listed once, in human and --json output (valid
against docs/ulpctl.schema.json); on the wire the reply comes in parts of bounded size,
the next made only once the client read the last; a client that does not ask for parts
gets one line saying why not; status -p is unchanged; a client that stops reading
holds up nobody and is dropped when idle; the results of 300 reverts come in parts; a
process whose own status does not fit in a message (2500 functions with long names) is
listed with why, in one line."""

import json
import os
import re
import socket
import subprocess
import time

from fleettest import AS_USER, valid
from ulpdtest import SLOWDOWN, Client, Daemon, check, env_path, fail, need_root, wait_for

need_root()
N_SMALL, N_BIG = 300, 6
MESSAGE_MAX = 256 * 1024
LIB_VICTIM, LIB_PATCH = env_path("BENCH_LIB_VICTIM"), env_path("BENCH_LIB_PATCH")
BIG_VICTIM, BIG_PATCH = env_path("BENCH_VICTIM"), env_path("BENCH_PATCH_1000")
ULPCTL = env_path("ULPCTL")

d = Daemon().start()
env = dict(os.environ, ULP_SOCKET=d.socket)

# A program of N_WIDE functions of 90-byte names, and a patch of them all: built while
# the rest runs.
N_WIDE = 2500
wide_name = ("f_" + "wide_symbol_name_" * 5)[:86] + "%04d"
with open(os.path.join(d.tmp, "wide.c"), "w") as f:
    f.write("#include <signal.h>\n#include <sys/prctl.h>\n#include <unistd.h>\nvolatile int bias;\n")
    for i in range(N_WIDE):
        f.write("__attribute__((noipa, used)) int %s(int x) { return x + bias + %d; }\n" % (wide_name % i, i))
    f.write('int main(void) { prctl(PR_SET_PDEATHSIG, SIGKILL); if (write(1, "ready\\n", 6) != 6) return 1; '
            "for (;;) pause(); }\n")
with open(os.path.join(d.tmp, "wide-patch.c"), "w") as f:
    f.write('#include <ulp/patch.h>\nULP_PATCH_INFO("wide", "every function of wide-victim");\n')
    for i in range(N_WIDE):
        f.write("__attribute__((noipa)) int %s_v2(int x) { return x + %d + 1; }\n" % (wide_name % i, i))
        f.write('ULP_FUNC(ULP_MAIN, "%s", %s_v2);\n' % (wide_name % i, wide_name % i))
include = os.path.join(os.environ["ULP_SOURCE_ROOT"], "include")
wide_cc = [subprocess.Popen(["cc", "-O1", "-o", os.path.join(d.tmp, "wide-victim"), os.path.join(d.tmp, "wide.c")]),
           subprocess.Popen(["cc", "-O1", "-shared", "-fPIC", "-I", include, "-o", os.path.join(d.tmp, "wide.so"),
                             os.path.join(d.tmp, "wide-patch.c")])]


def ulpctl(*args, user=False):
    r = subprocess.run((AS_USER if user else []) + [ULPCTL, *args], capture_output=True, text=True,
                       timeout=120 * SLOWDOWN, env=env)
    return r.returncode, r.stdout, r.stderr


def apply(pids, patch, name):
    args = []
    for p in pids:
        args += ["-p", str(p)]
    t0 = time.time()
    rc, out, err = ulpctl("apply", *args, patch)
    n = sum(1 for line in out.splitlines() if line.startswith(f"applied {name} to process"))
    check(rc == 0 and n == len(pids), f"{name} applied to {n} of {len(pids)} processes in "
          f"{time.time() - t0:.1f} s (rc {rc}) {err.strip()[-200:]}")


# The victims: each writes a byte to one pipe once it runs, and exits at the end of its
# standard input (one pipe for all) or with this test (PR_SET_PDEATHSIG).
ready_r, ready_w = os.pipe()
stdin_r, stdin_w = os.pipe()
small = [subprocess.Popen(AS_USER + [LIB_VICTIM, str(ready_w)], pass_fds=[ready_w], stdin=stdin_r)
         for _ in range(N_SMALL)]
got, end = 0, time.time() + 30 * SLOWDOWN
while got < N_SMALL and time.time() < end:
    got += len(os.read(ready_r, N_SMALL - got))
check(got == N_SMALL, f"{N_SMALL} small processes run, as uid 65534")
big = [subprocess.Popen([BIG_VICTIM, "1", "idle"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
       for _ in range(N_BIG)]
for b in big:
    if b.stdout.readline().strip() != b"ready":
        fail(f"bench victim {b.pid} did not start")
small_pids = [p.pid for p in small]
big_pids = [b.pid for b in big]
ours = set(small_pids) | set(big_pids)

apply(small_pids, LIB_PATCH, "benchlib")
apply(big_pids, BIG_PATCH, "bench1000")


def carries(proc, name):
    return any(x["name"] == name and x["state"] == "patched" for x in proc["patches"])


def check_listing(doc, how, pids=ours):
    listed = [p["pid"] for p in doc["processes"]]
    check(len(listed) == len(set(listed)), f"{how}: no process listed twice ({len(listed)} listed)")
    missing = pids - set(listed)
    check(not missing, f"{how}: every one of the {len(pids)} processes listed (missing {sorted(missing)[:5]})")
    byp = {p["pid"]: p for p in doc["processes"]}
    bad = [p for p in pids if not carries(byp[p], "benchlib" if p in small_pids else "bench1000")]
    check(not bad, f"{how}: each with its patch applied (not: {bad[:5]})")
    big_funcs = {len(byp[p]["patches"][0]["functions"]) for p in big_pids if p in pids}
    check(big_funcs <= {1000}, f"{how}: the 1000 functions of each big one")


# (1) --json through ulpd and --direct: one document, by the schema, larger than a message
for how in ([], ["--direct"]):
    t0 = time.time()
    rc, out, err = ulpctl(*how, "status", "--json")
    name = " ".join(["status --json"] + how)
    check(rc == 0, f"{name}: exit 0 in {time.time() - t0:.2f} s {err.strip()}")
    doc = valid("status", out)
    size = len(json.dumps(doc["processes"], separators=(",", ":")))
    check(size > MESSAGE_MAX, f"{name}: the listing ({size // 1024} KiB) is larger than a message")
    check_listing(doc, name)

# (2) the lines: one per process, its patch under it
for how in ([], ["--direct"]):
    rc, out, err = ulpctl(*how, "status")
    lines = out.splitlines()
    heads = [ln for ln in lines if ln.startswith("process ")]
    found = {int(ln.split()[1]) for ln in heads}
    check(rc == 0 and ours <= found and len(heads) == len(set(heads)),
          f"status {' '.join(how)}: a line for each of the {len(ours)} processes (rc {rc}, {len(heads)} lines)")
    i = lines.index(f"process {small_pids[-1]} (bench-lib-victi)")
    check(lines[i + 1].startswith("  benchlib: patched, applied "), f"...its patch under it: {lines[i + 1]!r}")

# (3) on the wire: parts of at most 32 processes within a message, then the totals
c = Client(d.socket)
c.send({"method": "status", "parts": True})
parts, sizes, total = [], [], 0
while True:
    while b"\n" not in c.buf:
        chunk = c.s.recv(1 << 16)
        if not chunk:
            fail("ulpd closed the connection before the end of the status")
        c.buf += chunk
    line, c.buf = c.buf.split(b"\n", 1)
    sizes.append(len(line) + 1)
    m = json.loads(line)
    if m["type"] == "status_part":
        parts.append(m["processes"])
        continue
    check(m["type"] == "status", f"the final message is the status: {m['type']}")
    parts.append(m["processes"])
    total = m["processes_total"]
    break
c.close()
n = sum(len(p) for p in parts)
check(len(parts) > 10 and max(sizes) <= MESSAGE_MAX and max(len(p) for p in parts) <= 32,
      f"{len(parts)} messages of at most {max(sizes)} bytes and {max(len(p) for p in parts)} processes")
check(total == n and ours <= {p["pid"] for part in parts for p in part},
      f"processes_total {total} counts what came in the parts ({n})")

# (4) a client that does not take parts: one line saying why, not a line too long to read
c = Client(d.socket)
r = c.request({"method": "status"})
version = Client(d.socket).request({"method": "ping"})["daemon_version"]
check(r == {"version": 1, "type": "error", "errno": 90,
            "error": "the status of these processes is larger than one message (256 KiB); "
                     f"ulpctl of ulp {version} or later receives it in parts"},
      f"without \"parts\": {r.get('error')}")
c.close()

# (5) status -p as before: the one process, all of its 1000 functions
rc, out, err = ulpctl("status", "-p", str(big_pids[0]), "--json")
doc = valid("status", out)
check(rc == 0 and [p["pid"] for p in doc["processes"]] == [big_pids[0]] and
      len(doc["processes"][0]["patches"][0]["functions"]) == 1000, f"status -p {big_pids[0]}: that process alone")

# (6) the user's own processes: more than the 256 proofs a request carries
rc, out, err = ulpctl("status", "--json", user=True)
doc = valid("status", out)
check(rc == 0 and not {p["pid"] for p in doc["processes"]} & set(big_pids),
      f"status as uid 65534: none of root's processes ({err.strip()})")
check_listing(doc, "status as uid 65534", set(small_pids))

# (7) a client that stops reading: ulpd serves the others meanwhile, and goes on where it
# stopped once the client reads again
slow = Client(d.socket)
slow.send({"method": "status", "parts": True})
time.sleep(1)
t0 = time.time()
r = Client(d.socket).request({"method": "ping"})
check(r["type"] == "pong" and time.time() - t0 < 2 * SLOWDOWN,
      f"ping answered in {(time.time() - t0) * 1000:.0f} ms while a client does not read its status")
queued = len(slow.s.recv(1 << 22, socket.MSG_PEEK | socket.MSG_DONTWAIT))
got = []
while True:
    m = slow.recv()
    if m is None:
        fail("the slow reader's status ended early")
    got += m["processes"]
    if m["type"] == "status":
        break
check(len(got) == m["processes_total"] and ours <= {p["pid"] for p in got},
      f"...and it gets the whole status once it reads ({queued // 1024} KiB were waiting, "
      f"{sum(sizes) // 1024} KiB in all)")
slow.close()

# ... one that goes away after the first part leaves ulpd serving the others
for _ in range(3):
    gone = Client(d.socket)
    gone.send({"method": "status", "parts": True})
    check(gone.recv()["type"] == "status_part", "a client reads the first part and goes away")
    gone.close()
    check(Client(d.socket).request({"method": "ping"})["type"] == "pong", "...ulpd answers the next")

# (8) ... and one that never reads again is dropped once idle for 10 s, not served forever:
# what it finds when it looks is what the socket held, then the end, without the final status
idle = Client(d.socket)
idle.send({"method": "status", "parts": True})
time.sleep(12)
seen, eof = b"", False
end = time.time() + 30 * SLOWDOWN
while not eof and time.time() < end:
    try:
        chunk = idle.s.recv(1 << 22, socket.MSG_DONTWAIT)
    except BlockingIOError:
        time.sleep(0.5)
        continue
    eof = not chunk
    seen += chunk
check(eof and b'"type":"status"' not in seen,
      f"a client that reads nothing for 10 s is dropped before the end ({len(seen) // 1024} KiB had come)")
idle.close()

# (9) the results of an apply or revert come in parts too: 300 reverts in one request
c = Client(d.socket)
c.send({"method": "revert", "pids": small_pids, "name": "benchlib", "wait": True, "parts": True})
parts = []
while True:
    m = c.recv()
    if m is None:
        fail("ulpd closed the connection before the revert's result")
    if m["type"] in ("progress", "started"):
        continue
    parts.append(m)
    if m["type"] != "result_part":
        break
c.close()
results = [x for p in parts for x in p.get("results", [])]
check([p["type"] for p in parts] == ["result_part", "result"] and len(parts[0]["results"]) == 256 and
      parts[-1]["results_total"] == N_SMALL, f"revert of {N_SMALL}: a part of 256 results, then the rest "
      f"({[(p['type'], len(p.get('results', []))) for p in parts]})")
check([x["pid"] for x in results] == small_pids and all(x["ok"] for x in results),
      "...one per process, in the order asked, each reverted")
rc, out, err = ulpctl("status", "--json")
left = {p["pid"] for p in valid("status", out)["processes"]} & set(small_pids)
check(rc == 0 and not left, f"status: none of them carries a patch any more ({sorted(left)[:5]})")

# (10) a process whose own status does not fit in a message: listed with why, in one line
if any(p.wait(timeout=120 * SLOWDOWN) != 0 for p in wide_cc):
    fail("cannot build the program of many functions and its patch (cc)")
wide = subprocess.Popen([os.path.join(d.tmp, "wide-victim")], stdout=subprocess.PIPE)
check(wide.stdout.readline() == b"ready\n", f"a process of {N_WIDE} functions runs")
apply([wide.pid], os.path.join(d.tmp, "wide.so"), "wide")
rc, out, err = ulpctl("status", "-p", str(wide.pid))
check(rc == 0 and re.fullmatch(rf"process {wide.pid} \(wide-victim\): its status is too large to send \(\d+ KiB, "
                               rf"{N_WIDE} functions in 1 patch; a message holds 256 KiB\): ulpctl --direct "
                               rf"status -p {wide.pid} shows it\n", out) is not None, f"status -p: {out.strip()}")
rc, out, err = ulpctl("status", "--json")
doc = valid("status", out)
entry = [p for p in doc["processes"] if p["pid"] == wide.pid]
check(rc == 0 and len(entry) == 1 and entry[0]["error"].startswith("its status is too large to send (") and
      entry[0]["patches"] == [], "status --json: it is listed once, with that error and no patches")
check_listing(doc, "status --json, with it", set(big_pids))
rc, out, err = ulpctl("--direct", "status", "-p", str(wide.pid), "--json")
funcs = valid("status", out)["processes"][0]["patches"][0]["functions"]
check(rc == 0 and len(funcs) == N_WIDE, f"--direct status -p shows its {len(funcs)} functions")
wide.kill()

os.close(stdin_w)
check(d.alive(), "ulpd still runs")
rc = d.stop()
check(rc == 0, f"ulpd stops cleanly (exit {rc})")
