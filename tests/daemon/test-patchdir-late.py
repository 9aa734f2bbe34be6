#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpd --patch-dir naming a directory that does not exist yet when ulpd starts
(docs/fleet.md), with a real ulpd and a real victim: ulpd watches the parent, so a
directory made later, by mkdir or renamed into place, is looked at at once, not at the
30 s rescan. Each time the file put there is taken within SCAN_BOUND seconds (not scaled
by the load: ulpd only reads a directory, and the rescan would come at 30 s) and the
running victim is patched; removing the directory reverts it."""

import os
import shutil
import time

from fleettest import pinned_setup
from ulpdtest import Daemon, check, need_root, scratch_dir, victim_status, wait_for

SCAN_BOUND = 15

need_root()
tmp = scratch_dir("ulpd-test-")
os.chmod(tmp, 0o755)
pdir = os.path.join(tmp, "patches.d")
d = Daemon(extra_args=("--no-recover", "--patch-dir", pdir), tmp=tmp).start()
NAME, patch, vs = pinned_setup(tmp, "latedir", "latedirvictim")
TAKEN = f"patch directory: {pdir}/{NAME}.so applied as sticky patch {NAME}"


def runs(st, version):
    """The victim's calls go to version (1 or 2) and keep going there."""
    mine = f"v{version}"
    a = wait_for(lambda: (victim_status(st) or {}).get(mine, 0) > 0 and victim_status(st), 5)
    return bool(a) and bool(wait_for(lambda: (victim_status(st) or {}).get(mine, 0) > a.get(mine, 0) + 20, 5))


def settled(st, version):
    return wait_for(lambda: runs(st, version), 20, step=0.2)


def taken_within(n, seconds):
    """The n-th time ulpd took the file, within seconds of now (unscaled); the time it
    took, or None."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if d.read_log().count(TAKEN) >= n:
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def log_unless(took):
    """The time taken, rounded; ulpd's log first when it was not taken."""
    if took is None:
        print(d.read_log()[-3000:])
        return "not taken"
    return f"taken in {took:.2f} s"


try:
    check(not os.path.exists(pdir), "the directory does not exist when ulpd starts")
    v1, st1 = vs.start()
    check(settled(st1, 1), "the victim runs version 1")

    # made by mkdir, then the file renamed into it
    os.mkdir(pdir, 0o755)
    shutil.copyfile(patch, os.path.join(pdir, "." + NAME + ".tmp"))
    os.rename(os.path.join(pdir, "." + NAME + ".tmp"), os.path.join(pdir, NAME + ".so"))
    took = taken_within(1, SCAN_BOUND)
    check(took is not None, f"a directory made by mkdir after ulpd started is looked at at once "
          f"({log_unless(took)}, bound {SCAN_BOUND} s)")
    check(settled(st1, 2), "and the running victim is patched from it")

    shutil.rmtree(pdir)
    check(settled(st1, 1), "removing the directory reverts the victim")

    # made elsewhere with its file, then renamed into place
    staging = os.path.join(tmp, ".patches.d.new")
    os.mkdir(staging, 0o755)
    shutil.copyfile(patch, os.path.join(staging, NAME + ".so"))
    os.rename(staging, pdir)
    took = taken_within(2, SCAN_BOUND)
    check(took is not None, f"a directory renamed into place is looked at at once ({log_unless(took)}, "
          f"bound {SCAN_BOUND} s)")
    check(settled(st1, 2), "and the running victim is patched again")
    check(d.alive(), "ulpd still runs")
finally:
    vs.kill()
check(d.stop() == 0, "ulpd stopped cleanly")
