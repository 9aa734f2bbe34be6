#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""examples/fleet/patch.yml run for real by ansible-playbook against this machine
(-i localhost, -c local) and a real ulpd on a socket and patch directory of this run
(docs/fleet.md, "With Ansible"):
- state=present puts the pinned patch into the directory; the running victim changes
  to the fixed code, and the playbook's own checks (ulpd took the file, it applied,
  status --missing lists nothing) pass;
- run again while a process of the patched program cannot finish its transition (a
  thread stays inside the replaced function), the playbook's status check fails and
  names that process;
- state=absent removes the file; the victim runs the old code again.
Skipped, saying so, when ansible-playbook is missing (the Debian package ansible-core,
which scripts/setup-deps.sh installs)."""

import os
import re
import shutil
import subprocess
import tempfile

from fleettest import ROOT, pinned_setup
from ulpdtest import SLOWDOWN, Daemon, check, fail, need_root, skip, victim_status, wait_for

need_root()
playbook_exe = shutil.which("ansible-playbook")
if not playbook_exe:
    skip("ansible-playbook missing (Debian package ansible-core; scripts/setup-deps.sh installs it)")
tmp = tempfile.mkdtemp(prefix="ulpd-test-")
os.chmod(tmp, 0o755)
# There before ulpd starts, as the package ships /etc/ulp/patches.d (one made later is
# found as it appears: ulpd-patchdir-late).
pdir = os.path.join(tmp, "patches.d")
os.mkdir(pdir, 0o755)
d = Daemon(extra_args=("--no-recover", "--patch-dir", pdir), tmp=tmp).start()
NAME, patch, vs = pinned_setup(tmp, "ansfix", "ansvictim")
# ulpctl on PATH as the playbook calls it, speaking to this run's ulpd
bindir = os.path.join(tmp, "bin")
os.mkdir(bindir)
os.symlink(os.environ["ULPCTL"], os.path.join(bindir, "ulpctl"))
env = dict(os.environ, PATH=bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"), ULP_SOCKET=d.socket,
           ANSIBLE_HOME=os.path.join(tmp, "ansible"), ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "ansible", "tmp"),
           ANSIBLE_REMOTE_TEMP=os.path.join(tmp, "ansible", "remote"), ANSIBLE_NOCOLOR="1",
           ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3", ANSIBLE_FORCE_COLOR="0")


def playbook(*extra):
    """ansible-playbook examples/fleet/patch.yml on localhost: rc and output. Already
    root, so no become (sudo need not exist)."""
    args = [playbook_exe, "-i", "localhost,", "-c", "local", os.path.join(ROOT, "examples", "fleet", "patch.yml"),
            "-e", f"patch={patch}", "-e", f"patch_dir={pdir}", "-e", "ansible_become=false", *extra]
    r = subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True, timeout=300 * SLOWDOWN)
    return r.returncode, r.stdout + r.stderr


def tail(out, n=40):
    return "\n".join(out.splitlines()[-n:])


def recap(out):
    lines = [ln for ln in out.splitlines() if ln.startswith("localhost") and "ok=" in ln]
    return lines[-1] if lines else ""


def runs(st, version):
    """The victim's calls keep going to version (1 or 2), none to the other, no mix."""
    mine, other = f"v{version}", "v2" if version == 1 else "v1"
    a = victim_status(st) or {}
    if not wait_for(lambda: (victim_status(st) or {}).get(mine, 0) > a.get(mine, 0) + 20, 5):
        return False
    b = victim_status(st) or {}
    return b.get(other, 0) == a.get(other, 0) and b.get("bad", 0) == 0


try:
    v, st = vs.start()
    check(wait_for(lambda: runs(st, 1), 20, step=0.2), "the victim runs version 1")

    rc, out = playbook()
    if rc != 0:
        print(tail(out))
    check(rc == 0 and "failed=0" in recap(out), f"patch.yml state=present: rc {rc}, {recap(out)!r}")
    check(os.path.exists(os.path.join(pdir, NAME + ".so")), "the playbook put the patch into the directory")
    check(wait_for(lambda: runs(st, 2), 20, step=0.2), "the running victim changed to the fixed code")
    for task in ("ulpd took the file", "It applied", "Every process that runs the vulnerable code carries the fix"):
        check(f"TASK [{task}" in out, f"the playbook ran its check '{task}'")

    # a process whose transition cannot finish: the check must not pass. By the time it
    # runs, the process is in its transition, or (ansible-playbook starting slowly on a
    # loaded machine) past the transition's 30 s deadline, reversed: not applied.
    s, _ = vs.start(sleeper_ms=int(300000 * SLOWDOWN))
    rc, out = playbook("-e", "settle_seconds=5")
    report = out.partition("TASK [Report the processes left]")[2].partition("PLAY RECAP")[0]
    check(rc != 0 and "failed=1" in recap(out) and
          re.search(rf"process {s.pid} \(ansvictim\): {NAME} (in transition|not applied)", report),
          f"with pid {s.pid} stuck in its transition the status check fails and names it: rc {rc}, "
          f"{recap(out)!r}, {report.strip()!r}")
    s.kill()
    s.wait()

    rc, out = playbook("-e", "state=absent")
    if rc != 0:
        print(tail(out))
    check(rc == 0 and "failed=0" in recap(out), f"patch.yml state=absent: rc {rc}, {recap(out)!r}")
    check(not os.path.exists(os.path.join(pdir, NAME + ".so")), "the playbook removed the patch file")
    check(wait_for(lambda: runs(st, 1), 20, step=0.2), "the victim runs version 1 again")
except subprocess.TimeoutExpired as e:
    fail(f"ansible-playbook did not finish: {e}")
finally:
    vs.kill()
    check(d.stop() == 0, "ulpd stopped cleanly")
    shutil.rmtree(tmp, ignore_errors=True)
