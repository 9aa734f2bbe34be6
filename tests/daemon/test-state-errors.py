#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpd's replies when its state directory cannot take a sticky patch end in a sentence
naming the cause, not in the C library's errno text (common/errno-clause.h): a state
directory on a read-only file system, on a full one, and one whose patches/ is a file.
Each refused apply --all --sticky leaves the running victim unpatched, and a ulpd whose
state directory works applies the same patch. The file systems are tmpfs mounts in a
mount namespace of ulpd's own (unshare), so nothing of the host's is touched."""

import os
import shutil
import subprocess

from fleettest import Victims, own_copy, pinned_patch, ulpctl
from ulpdtest import Daemon, check, fail, need_root, patch_state, skip, victim_status, wait_for

need_root()
if not shutil.which("unshare"):
    fail("unshare missing (util-linux, scripts/setup-deps.sh installs it)")
tmp = Daemon().tmp    # a scratch directory; this ulpd is never started
if subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "ulp-test", tmp],
                  capture_output=True).returncode != 0:
    shutil.rmtree(tmp, ignore_errors=True)
    skip("cannot mount a tmpfs in a mount namespace of its own here (nested container?)")
victim = own_copy(os.environ["VICTIM"], tmp, "sevictim")
NAME = "sefix-" + os.path.basename(tmp).rsplit("-", 1)[-1]
patch = pinned_patch(victim, NAME, os.path.join(tmp, NAME + ".so"))
vs = Victims(tmp, victim)


def daemon_on(state, mount_opts):
    """A ulpd whose state directory is a fresh tmpfs mounted with mount_opts (None: the
    directory as it is), in a mount namespace of its own."""
    dtmp = os.path.join(tmp, os.path.basename(state) + "-d")
    os.makedirs(dtmp, exist_ok=True)
    d = Daemon(state_dir=state, tmp=dtmp)
    if mount_opts:
        d.args = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                  f'mount -t tmpfs -o {mount_opts} ulp-test "$0" && exec "$@"', state, *d.args]
    return d.start()


def refused(state, mount_opts, want):
    d = daemon_on(state, mount_opts)
    try:
        r, out, err = ulpctl(d.socket, "apply", "--all", "--sticky", patch)
        check(r == 1 and err == f"ulpctl: {want}\n", f"state directory {mount_opts or 'as it is'}: {err.strip()!r}")
        check(patch_state(d.socket, vp.pid, NAME) is None, "the refused apply left the victim without the patch")
    finally:
        check(d.stop() == 0, "ulpd stopped cleanly")


try:
    vp, vst = vs.start()
    ro, full, filed = (os.path.join(tmp, n) for n in ("ro", "full", "filed"))
    for p in (ro, full, filed):
        os.mkdir(p, 0o700)
    refused(ro, "ro,mode=0700", f"cannot create {ro}/patches: the file system is read-only")
    # one page: the directory fits, the patch file does not
    check(os.path.getsize(patch) > 4096, f"the patch ({os.path.getsize(patch)} bytes) is larger than one page")
    refused(full, "size=4k,mode=0700", f"cannot record the sticky patch in {full}/patches: the file system is full")
    open(os.path.join(filed, "patches"), "w").close()
    refused(filed, None, f"cannot record the sticky patch in {filed}/patches: a part of the path is not a directory")
    v = victim_status(vst)
    check(v and v["v2"] == 0, f"the victim never ran the patch: {v}")

    # the same request with a state directory that works: the patch reaches the victim
    d = daemon_on(os.path.join(tmp, "good"), None)
    try:
        r, out, err = ulpctl(d.socket, "apply", "--all", "--sticky", patch)
        check(r == 0, f"apply --all --sticky with a working state directory: {out.strip()} {err.strip()}")
        check(wait_for(lambda: (victim_status(vst) or {}).get("v2", 0) > 0, 30), "the victim runs the patch")
        r, out, err = ulpctl(d.socket, "revert", "--all", "--sticky", NAME)
        check(r == 0, f"revert --all --sticky: {err.strip()}")
    finally:
        check(d.stop() == 0, "ulpd stopped cleanly")
finally:
    vs.kill()
    shutil.rmtree(tmp, ignore_errors=True)
