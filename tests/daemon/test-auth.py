#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Who may do what: the kernel decides, when the caller opens /proc/PID/mem itself
(docs/security.md). As a real unprivileged user (uid 65534) through the real ulpctl and
ulpd: refused for root's processes, for a process of the same uid but another gid, for
one holding a capability the caller lacks, for a non-dumpable one, for ulpd itself,
with one clear line each and the victims unchanged; forged or stale proofs refused;
the user patches their own process. Then the exec race: proofs opened, the target
executes a setuid-root program, the request with those proofs is refused and nothing is
written into the new program (which the same patch fits: root then patches it); and an
exec while ulpd has the process stopped aborts the operation cleanly."""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

from ulpdtest import Client, Daemon, build_id, check, need_root, victim_status, wait_for, fail

need_root()
if not shutil.which("setpriv"):
    fail("setpriv missing (util-linux, scripts/setup-deps.sh installs it)")
if not hasattr(os, "pidfd_open"):
    fail("python without os.pidfd_open (3.9 or later is needed)")
UID = 65534
VICTIM, PATCH, PATCH_EXEC = os.environ["VICTIM"], os.environ["PATCH"], os.environ["PATCH_EXEC"]
ULPCTL = os.environ["ULPCTL"]
AS_USER = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]
here = os.path.dirname(os.path.abspath(__file__))

# A callback that executes a program (case e2) may take long on a loaded machine.
d = Daemon(extra_args=("--no-recover", "--callback-timeout", "20000")).start()
shared = os.path.join(d.tmp, "shared")
os.mkdir(shared)
os.chmod(shared, 0o1777)
patch = os.path.join(shared, "daemon-fix.so")
shutil.copy(PATCH, patch)
patch_exec = os.path.join(shared, "daemon-fix-exec.so")
shutil.copy(PATCH_EXEC, patch_exec)
for p in (patch, patch_exec):
    os.chmod(p, 0o644)
procs = []
suid_dir = None


def as_user(code, *args, stdin=None, background=False):
    """Runs Python code as the unprivileged user, with ulpdtest importable and the daemon's
    socket as sys.argv[1]; returns the JSON it prints (or the Popen when background)."""
    cmd = AS_USER + [sys.executable, "-c",
                     "import json, os, sys; sys.path.insert(0, %r)\n"
                     "from ulpdtest import Client, open_proof\n" % here + code, d.socket, *args]
    if background:
        return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"client as uid {UID} failed: {r.stderr}")
    return json.loads(r.stdout)


SHARE_USED = "used its share of ulpd's time; try again in a few seconds"


def ulpctl_user(*args):
    """ulpctl as the user. On a loaded machine this test's earlier requests can use up the
    uid's share of ulpd's time (docs/limits.md: 1 s per 10 s window, counted in wall
    time); a command of which nothing started for that reason alone is run again once the
    window has passed, as the message tells a user to."""
    env = dict(os.environ, ULP_SOCKET=d.socket)
    for _ in range(3):
        r = subprocess.run(AS_USER + [ULPCTL, *args], capture_output=True, text=True, timeout=120, env=env)
        errs = [l for l in r.stderr.splitlines() if l.strip()]
        if r.returncode == 0 or r.stdout.strip() or not errs or not all(SHARE_USED in l for l in errs):
            break
        time.sleep(10.5)
    return r.returncode, r.stdout, r.stderr


def start(cmd, st, env=None):
    p = subprocess.Popen(cmd, env=env)
    procs.append(p)
    if not wait_for(lambda: (victim_status(st) or {}).get("v1", 0) > 0, 30):
        fail(f"victim did not start: {cmd}")
    return p


def start_victim(prefix, *extra, env=None):
    st = os.path.join(shared, f"victim{len(procs)}.status")
    return start([*prefix, VICTIM, st, "3", "200", "0", *extra], st, env), st


def unchanged(st, what):
    # The refusal came before anything was written: a while later it still runs version 1.
    time.sleep(0.3)
    vs = victim_status(st)
    check(vs["v2"] == 0 and vs["bad"] == 0, f"{what} unchanged: {vs}")


def maps_have_ulp(pid):
    """The control block and the patch are memfd mappings: "/memfd:ulp-..." in maps."""
    with open(f"/proc/{pid}/maps") as f:
        return "memfd:ulp" in f.read()


def uid_of(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return UID   # gone meanwhile: it was listed, so it was the user's


def kernel_refuses(pid):
    """What strace -p would meet: the kernel's own answer to this user's access."""
    return as_user("try:\n    os.close(os.open('/proc/%d/mem', os.O_RDWR)); print('false')\n"
                   "except PermissionError:\n    print('true')\n" % pid)


def refused_by_kernel(pid, what, st, why):
    check(kernel_refuses(pid), f"the kernel refuses uid {UID} access to {what}")
    rc, out, err = ulpctl_user("apply", "-p", str(pid), patch)
    line = (f"ulpctl: not allowed to trace process {pid} "
            f"(the kernel's ptrace access check for this user: {why})")
    check(rc == 1 and err.strip() == line, f"ulpctl apply to {what} refused: rc={rc} {err.strip()!r}")
    # --direct meets the kernel's refusal itself, and says it in the same words
    rc, out, err = ulpctl_user("--direct", "apply", "-p", str(pid), patch)
    check(rc == 1 and err.strip() == line, f"ulpctl --direct apply to {what}: the same line: rc={rc} {err.strip()!r}")
    # Without a proof, ulpd refuses the same request by itself.
    out = as_user("c = Client(sys.argv[1])\n"
                  "print(json.dumps(c.request({'method': 'apply', 'pids': [int(sys.argv[2])], 'name': 'd.so',"
                  " 'wait': True}, fd=os.open(sys.argv[3], os.O_RDONLY))))\n", str(pid), patch)
    res = out["results"][0]
    check(not res["ok"] and res["errno_name"] == "EPERM" and res["error"] ==
          f"not allowed to trace process {pid}: the request carries no proof of access to it "
          f"(ulpctl opens /proc/{pid}/mem as the caller and passes it)",
          f"a request without proof for {what} refused: {res.get('error') or 'APPLIED'}")
    if st:
        unchanged(st, what)


# Run in a new user, pid and mount namespace (unshare -Urpfm --mount-proc) with the socket,
# root's victim's pid, a pidfd of it opened outside and the patch: makes a process of its
# own that has the victim's pid in there, and sends that process's /proc/PID/mem with the
# victim's pidfd as the proof for the victim.
# (the system's python: one under /root, as a python of root's own may be, the user in
# a namespace of its own may not run)
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
FORGE_IN_NS = """
import json, os, sys
sys.path.insert(0, %r)
from ulpdtest import Client
sock, rv, pidfd, patch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
# Descriptors in flight in unix sockets count per user against the sender's RLIMIT_NOFILE
# (ETOOMANYREFS past it), and uid 65534 is shared with other tests on a busy machine.
import resource
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
with open('/proc/sys/kernel/ns_last_pid', 'w') as f:
    f.write(str(rv - 1))
r, w = os.pipe()
inner = os.fork()
if inner == 0:
    os.read(r, 1)
    os._exit(0)
def proof():
    return [os.open('/proc/%%d/mem' %% inner, os.O_RDWR), os.dup(pidfd)]
out = {'inner': inner}
c = Client(sock)
out['status'] = c.request({'method': 'status', 'pid': rv, 'targets': [rv]}, fd=proof())
out['check'] = c.request({'method': 'check', 'pid': rv, 'targets': [rv], 'name': 'd.so'},
                         fd=[os.open(patch, os.O_RDONLY)] + proof())
out['apply'] = c.request({'method': 'apply', 'pids': [rv], 'targets': [rv], 'name': 'd.so', 'wait': True},
                         fd=[os.open(patch, os.O_RDONLY)] + proof())
os.write(w, b'x')
os.waitpid(inner, 0)
print(json.dumps(out))
""" % here


def apply_raw(pid, fds, targets):
    """apply as the user with the given proof descriptors (a Python expression)."""
    out = as_user("c = Client(sys.argv[1]); pid = int(sys.argv[2])\n"
                  "fds = [os.open(sys.argv[3], os.O_RDONLY)] + %s\n"
                  "print(json.dumps(c.request({'method': 'apply', 'pids': [pid], 'targets': %s,"
                  " 'name': 'd.so', 'wait': True}, fd=fds)))\n" % (fds, targets), str(pid), patch)
    return out


def suid_capable_dir():
    for base in (d.tmp, "/var/tmp", os.environ.get("MESON_BUILD_ROOT", "")):
        if base and os.path.isdir(base) and not (os.statvfs(base).f_flag & os.ST_NOSUID):
            t = tempfile.mkdtemp(prefix="ulp-auth-suid-", dir=base)
            os.chmod(t, 0o755)
            return t
    return None


try:
    root_victim, root_st = start_victim([])
    user_victim, user_st = start_victim(AS_USER)
    other_victim, _ = start_victim(AS_USER)

    # --- the kernel decides --------------------------------------------------------------
    refused_by_kernel(1, "pid 1", None, "its user ids are not all yours")
    refused_by_kernel(root_victim.pid, "root's victim", root_st, "its user ids are not all yours")
    for verb in (["check", "-p", str(root_victim.pid), patch], ["status", "-p", str(root_victim.pid)]):
        rc, out, err = ulpctl_user(*verb)
        check(rc == 1 and err.strip() == f"ulpctl: not allowed to trace process {root_victim.pid} "
              "(the kernel's ptrace access check for this user: its user ids are not all yours)",
              f"ulpctl {verb[0]} of root's victim refused: rc={rc} {err.strip()!r}")
    rc, out, err = ulpctl_user("check", "-p", str(user_victim.pid), patch)
    check(f"would apply to process {user_victim.pid}" in out or "would block the transition now" in err,
          f"ulpctl check of the user's own victim runs: rc={rc} {out}{err}")
    gid_victim, gid_st = start_victim(["setpriv", f"--reuid={UID}", "--regid=42", "--clear-groups"])
    refused_by_kernel(gid_victim.pid, "a process of uid 65534 with gid 42", gid_st, "its group ids are not all yours")
    cap_victim, cap_st = start_victim(AS_USER + ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"])
    with open(f"/proc/{cap_victim.pid}/status") as f:
        capprm = int([l.split()[1] for l in f if l.startswith("CapPrm:")][0], 16)
    check(capprm & (1 << 2), f"the capability victim holds CAP_DAC_READ_SEARCH (CapPrm {capprm:x})")
    refused_by_kernel(cap_victim.pid, "a process of uid 65534 holding CAP_DAC_READ_SEARCH", cap_st,
                      "it holds capabilities you lack")
    nodump_victim, nodump_st = start_victim(AS_USER, "nodump")
    refused_by_kernel(nodump_victim.pid, "a non-dumpable process of uid 65534", nodump_st, "it is not dumpable")

    out = as_user("c = Client(sys.argv[1])\n"
                  "print(json.dumps([c.request({'method': 'status', 'pid': 1}),"
                  " c.request({'method': 'apply', 'pids': [int(sys.argv[2])], 'name': 'd.so', 'wait': True},"
                  " fd=os.open(sys.argv[3], os.O_RDONLY)),"
                  " c.request({'method': 'apply', 'all': True, 'persist': True, 'name': 'd.so'},"
                  " fd=os.open(sys.argv[3], os.O_RDONLY))]))\n", str(d.proc.pid), patch)
    check(out[0]["type"] == "error" and out[0]["errno"] == 1 and "\n" not in out[0]["error"],
          f"status of pid 1 refused: {out[0]['error']}")
    res = out[1]["results"][0]
    check(not res["ok"] and "ulpd itself" in res["error"], f"apply to ulpd refused: {res.get('error') or 'APPLIED'}")
    check(out[2]["type"] == "error" and out[2]["errno"] == 1, f"--persist refused: {out[2]['error']}")

    # --- forged proofs -------------------------------------------------------------------
    uv, ov, rv = user_victim.pid, other_victim.pid, root_victim.pid
    res = apply_raw(rv, f"[os.open('/proc/{uv}/mem', os.O_RDWR), os.pidfd_open({rv})]", f"[{rv}]")["results"][0]
    check(not res["ok"] and res["error"] == f"not allowed to trace process {rv}: the descriptor sent for it is not /proc/{rv}/mem",
          f"another process's mem descriptor is no proof: {res.get('error') or 'APPLIED'}")
    res = apply_raw(uv, f"[os.open('/proc/{uv}/mem', os.O_RDONLY), os.pidfd_open({uv})]", f"[{uv}]")["results"][0]
    check(not res["ok"] and res["error"] == f"not allowed to trace process {uv}: /proc/{uv}/mem was not opened for reading and writing",
          f"a read-only mem descriptor is no proof: {res.get('error') or 'APPLIED'}")
    res = apply_raw(uv, f"[os.open('/proc/{uv}/mem', os.O_RDWR), os.pidfd_open({ov})]", f"[{uv}]")["results"][0]
    check(not res["ok"] and res["error"] == f"not allowed to trace process {uv}: the pidfd sent for it is for process {ov}",
          f"another process's pidfd is no proof: {res.get('error') or 'APPLIED'}")
    res = apply_raw(uv, f"[os.open('/proc/{uv}/mem', os.O_RDWR), os.open('/dev/null', os.O_RDONLY)]", f"[{uv}]")["results"][0]
    check(not res["ok"] and res["error"] == f"not allowed to trace process {uv}: no pidfd for it came with the request",
          f"a file that is no pidfd is no proof: {res.get('error') or 'APPLIED'}")
    # A procfs of the user's own pid namespace, where the user's process has root's
    # victim's pid: its /proc/N/mem reads like the victim's, the pidfd is the victim's.
    # The memory behind the descriptor is not: status, check and apply are all refused.
    forged = as_user("import subprocess\n"
                     "rv = int(sys.argv[2]); pidfd = os.pidfd_open(rv)\n"
                     "r = subprocess.run(['unshare', '-Urpfm', '--mount-proc', sys.argv[5], '-c', sys.argv[4],"
                     " sys.argv[1], str(rv), str(pidfd), sys.argv[3]], pass_fds=[pidfd], capture_output=True, text=True)\n"
                     "print(r.stdout if r.returncode == 0 else json.dumps({'failed': r.stderr}))\n",
                     str(rv), patch, FORGE_IN_NS, SYSTEM_PYTHON)
    check("failed" not in forged, f"a user and pid namespace of the user's own: {forged.get('failed')}")
    check(forged["inner"] == rv, f"the user's process in its namespace has pid {rv}: {forged['inner']}")
    stale = (f"process {rv} does not run the program the descriptor sent for it shows (it executed a new program "
             "since the descriptor was opened, or the descriptor is another process's); nothing was written into it")
    for what, out in (("status", forged["status"]), ("check", forged["check"])):
        check(out["type"] == "error" and out["error"] == stale and "processes" not in out,
              f"{what} of root's victim with a proof from the user's own procfs refused: {out}")
    res = forged["apply"]["results"][0]
    check(not res["ok"] and res["errno_name"] == "ESTALE" and res["error"] == stale,
          f"apply to root's victim with a proof from the user's own procfs refused: {res.get('error') or 'APPLIED'}")
    unchanged(root_st, "root's victim")
    out = apply_raw(uv, "[]", f"[{uv}]")
    check(out["type"] == "error" and out["error"].startswith("the request carries 1 file descriptor(s), 3 expected"),
          f"targets without their descriptors refused: {out.get('error')}")
    unchanged(user_st, "the user's victim")

    # --- same credentials: applied -------------------------------------------------------
    # root patches its own victim with its own authority; the user must not see it
    c = Client(d.socket)
    r = c.request({"method": "apply", "pids": [rv], "name": "x.so", "wait": True}, fd=os.open(patch, os.O_RDONLY))
    check(r["results"][0]["ok"], "root patches its victim without a proof (ulpd's own authority)")
    r = c.request({"method": "apply", "pids": [d.proc.pid], "name": "x.so", "wait": True},
                  fd=os.open(patch, os.O_RDONLY))
    check(not r["results"][0]["ok"] and "ulpd itself" in r["results"][0]["error"], "not even root patches ulpd")

    rc, out, err = ulpctl_user("apply", "-p", str(uv), patch)
    check(rc == 0 and out.startswith(f"applied daemon-fix to process {uv}"), f"the user patches their own process: {out}{err}")
    vs = wait_for(lambda: (lambda v: v if v["v2"] > 0 else None)(victim_status(user_st)), 10) or victim_status(user_st)
    check(vs["v2"] > 0 and vs["bad"] == 0, f"the user's victim runs version 2: {vs}")
    rc, out, err = ulpctl_user("status", "--json")
    pids = [p["pid"] for p in json.loads(out)["processes"]] if rc == 0 else None
    # (other uid-65534 processes on a shared machine may carry patches too: only root's
    # must stay invisible)
    check(pids is not None and uv in pids and rv not in pids and all(uid_of(p) == UID for p in pids),
          f"the user's status shows their patched process and none of root's: {pids} {err}")
    rc, out, err = ulpctl_user("revert", "-p", str(uv), "daemon-fix")
    check(rc == 0, f"the user reverts it: {out}{err}")

    # --all by the user: the processes it may trace, and no other, even those the patch fits
    bid = build_id(VICTIM)
    if not bid:
        fail("the victim has no build-id (readelf -n)")
    pinned = os.path.join(shared, "daemon-fix-pinned.so")
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-I", os.path.join(os.environ["ULP_SOURCE_ROOT"], "include"),
                        f'-DVICTIM_BUILD_ID="{bid}"', os.environ["PATCH_SRC"], "-o", pinned], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"cannot build the pinned patch: {r.stderr}")
    os.chmod(pinned, 0o644)
    rc, out, err = ulpctl_user("apply", "--all", pinned)
    done = sorted(int(l.split("to process ")[1].split(":")[0]) for l in out.splitlines() if l.startswith("applied"))
    check(rc == 0 and done == sorted([uv, ov]), f"apply --all by the user patched its two processes only: {done} {err}")
    for st, what in [(gid_st, "the gid-42 process"), (cap_st, "the capability process"), (nodump_st, "the non-dumpable process")]:
        unchanged(st, what)
    for pid in (uv, ov):
        rc, out, err = ulpctl_user("revert", "-p", str(pid), "daemon-fix")
        check(rc == 0, f"the user reverts {pid}: {out}{err}")

    # root needs no proof: one that does not check out leaves it to ulpd's authority. A
    # fresh connection: on a loaded machine the steps above outlast ulpd's idle limit.
    c.close()
    c = Client(d.socket)
    r = c.request({"method": "revert", "pids": [rv], "targets": [rv], "name": "daemon-fix", "wait": True},
                  fd=[os.open("/proc/self/mem", os.O_RDWR), os.pidfd_open(rv)])
    check(r["results"][0]["ok"], f"root's request with a proof that does not fit still runs: {r['results'][0].get('error')}")

    # --- the exec race -------------------------------------------------------------------
    suid_dir = suid_capable_dir()
    if suid_dir is None:
        fail("no directory without nosuid for the setuid program (tried the test's own, /var/tmp, the build root)")
    suid_prog = os.path.join(suid_dir, "victim-suid")
    shutil.copy(VICTIM, suid_prog)
    os.chown(suid_prog, 0, 0)
    os.chmod(suid_prog, 0o4755)

    # (1) proofs opened, then the target executes a setuid-root program, then the request
    st = os.path.join(shared, "exec1.status")
    execer = subprocess.Popen(AS_USER + ["sh", "-c", 'read x; exec "$0" "$1" 3 200 0', suid_prog, st],
                              stdin=subprocess.PIPE, text=True)
    procs.append(execer)
    # setpriv starts as root: the user may open the process once it runs sh as the user
    if not wait_for(lambda: uid_of(execer.pid) == UID and open(f"/proc/{execer.pid}/comm").read().strip() == "sh", 30):
        fail("the process to execute the setuid program did not start as the user")
    client = as_user("pid = int(sys.argv[2]); fds = open_proof(pid)\n"
                     "print('opened', flush=True); sys.stdin.readline()\n"
                     "c = Client(sys.argv[1])\n"
                     "print(json.dumps(c.request({'method': 'apply', 'pids': [pid], 'targets': [pid], 'name': 'd.so',"
                     " 'wait': True}, fd=[os.open(sys.argv[3], os.O_RDONLY)] + fds)), flush=True)\n",
                     str(execer.pid), patch, background=True)
    check(client.stdout.readline().strip() == "opened", "the user opened /proc/PID/mem and a pidfd of their process")
    execer.stdin.write("go\n")
    execer.stdin.flush()
    if not wait_for(lambda: (victim_status(st) or {}).get("v1", 0) > 0, 30):
        fail("the setuid program did not start")
    with open(f"/proc/{execer.pid}/status") as f:
        uids = [l.split()[1:4] for l in f if l.startswith("Uid:")][0]
    check(uids[1] == "0", f"process {execer.pid} now runs the setuid-root program (uids {uids})")
    client.stdin.write("go\n")
    client.stdin.flush()
    out = json.loads(client.stdout.readline())
    client.wait(60)
    res = out["results"][0]
    check(not res["ok"] and res["errno_name"] == "ESTALE" and res["error"] ==
          f"process {execer.pid} does not run the program the descriptor sent for it shows (it executed a new program "
          "since the descriptor was opened, or the descriptor is another process's); nothing was written into it",
          f"the request with the stale proofs refused: {res.get('error') or 'APPLIED'}")
    unchanged(st, "the setuid program")
    check(not maps_have_ulp(execer.pid), "nothing of ulp's was mapped into the setuid program")
    # The patch fits that program: only the binding stood in the way. (A fresh
    # connection: waiting for the setuid program may outlast ulpd's idle limit.)
    c.close()
    c = Client(d.socket)
    r = c.request({"method": "apply", "pids": [execer.pid], "name": "x.so", "wait": True},
                  fd=os.open(patch, os.O_RDONLY))
    check(r["results"][0]["ok"], f"root may patch the setuid program: {r['results'][0].get('error')}")

    # (2) an exec while ulpd has the process stopped (its pre-patch callback executes the
    # setuid program): PTRACE_EVENT_EXEC, the operation ends at once, the new program runs
    st2 = os.path.join(shared, "exec2.status")
    ev, ev_st = start_victim(AS_USER, env=dict(os.environ, DAEMON_EXEC_PROG=suid_prog, DAEMON_EXEC_ARG=st2))
    rc, out, err = ulpctl_user("apply", "-p", str(ev.pid), patch_exec)
    check(rc == 1 and err.strip() ==
          f"ulpctl: process {ev.pid} executed a new program since the operation was authorized; nothing more was written into it",
          f"an exec during the apply aborts it: rc={rc} {err.strip()!r}")
    if not wait_for(lambda: (victim_status(st2) or {}).get("v1", 0) > 0, 30):
        fail("the program executed during the apply does not run")
    unchanged(st2, "the program executed during the apply")
    check(not maps_have_ulp(ev.pid), "nothing of ulp's is mapped into the new program")
    with open(f"/proc/{ev.pid}/status") as f:
        tracer = [l.split()[1] for l in f if l.startswith("TracerPid:")][0]
    check(tracer == "0", "ulpd let go of it")
    check(d.alive() and Client(d.socket).request({"method": "ping"})["type"] == "pong", "ulpd still serves")
    log = d.read_log()
    check(log.count("refused") >= 4, "refusals logged")
finally:
    for p in procs:
        p.kill()
        p.wait()
    if suid_dir:
        shutil.rmtree(suid_dir, ignore_errors=True)
    d.stop()
    print(d.read_log())
