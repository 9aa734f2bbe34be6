#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpd --patch-dir (docs/fleet.md), with a real ulpd and real victims: a patch renamed
into the directory patches the running victim, and a victim started afterwards; removing
the file reverts both. A file that cannot apply (not a patch, no ULP_BUILD_ID) is
reported once in the log and in status and not tried again until it changes; files that
are not root's or are writable by others are refused and never applied. status --json
reports the directory (docs/ulpctl.schema.json), --prometheus counts its files."""

import os
import shutil

from fleettest import pinned_setup, ulpctl, valid
from ulpdtest import Daemon, check, fail, need_root, scratch_dir, victim_status, wait_for

need_root()
tmp = scratch_dir("ulpd-test-")
os.chmod(tmp, 0o755)
pdir = os.path.join(tmp, "patches.d")
os.mkdir(pdir, 0o755)
d = Daemon(extra_args=("--no-recover", "--patch-dir", pdir), tmp=tmp).start()
NAME, patch, vs = pinned_setup(tmp, "dirfix", "dirvictim")
build = os.path.dirname(patch)


def drop(src, name, mode=0o644):
    """Puts src into the directory as name the way a careful tool does: a hidden temporary
    file, renamed into place when complete."""
    t = os.path.join(pdir, f".{name}.tmp")
    shutil.copyfile(src, t)
    os.chmod(t, mode)
    os.rename(t, os.path.join(pdir, name))


def runs(st, version):
    """The victim's calls keep going to version (1 or 2), and none to the other."""
    other = "v2" if version == 1 else "v1"
    mine = f"v{version}"

    def moved():
        a = victim_status(st) or {}
        return a

    first = wait_for(lambda: moved().get(mine, 0) > 0 and moved(), 5)
    if not first:
        return False
    a = moved()
    if not wait_for(lambda: moved().get(mine, 0) > a.get(mine, 0) + 20, 5):
        return False
    b = moved()
    return b.get(other, 0) == a.get(other, 0) and b.get("bad", 0) == 0


def settled(st, version, timeout=20):
    return wait_for(lambda: runs(st, version), timeout, step=0.2)


def files_state():
    r, out, err = ulpctl(d.socket, "status", "--json")
    if r != 0:
        fail(f"status --json: {r} {err}")
    doc = valid("status", out)
    return {f["file"]: f for f in doc.get("patch_dir", {}).get("files", [])}, doc


def log_count(s):
    return d.read_log().count(s)


try:
    v1, st1 = vs.start()
    check(settled(st1, 1), "victim 1 runs version 1")
    drop(patch, NAME + ".so")
    check(settled(st1, 2), "a patch renamed into the directory patches the running victim")
    files, doc = files_state()
    check(files.get(NAME + ".so") == {"file": NAME + ".so", "state": "applied", "patch": NAME}
          and doc["patch_dir"]["path"] == pdir, f"status --json reports the file applied: {files}")
    v2, st2 = vs.start()
    check(settled(st2, 2), "a victim started afterwards is patched too")

    # files that cannot apply: reported once, not retried until they change
    with open(os.path.join(pdir, "garbage.so"), "w") as f:
        f.write("not an ELF file\n")
    drop(os.environ["PATCH"], "unpinned.so")
    check(wait_for(lambda: files_state()[0].get("unpinned.so", {}).get("state") == "failed"
                   and files_state()[0].get("garbage.so", {}).get("state") == "failed", 10),
          "both files are reported failed in status")
    files, _ = files_state()
    check(files["unpinned.so"]["error"].startswith("patch daemon-fix does not pin the main executable's build-id"),
          f"...the unpinned one says why: {files['unpinned.so']['error']}")
    # untrusted files: writable by others, owned by another user
    drop(patch, "open.so", mode=0o666)
    drop(patch, "theirs.so")
    os.chown(os.path.join(pdir, "theirs.so"), 65534, 65534)
    check(wait_for(lambda: "theirs.so" in files_state()[0] and "open.so" in files_state()[0], 10),
          "the untrusted files are looked at")
    files, _ = files_state()
    check(files["open.so"] == {"file": "open.so", "state": "failed",
                               "error": "refused: writable by others (only root may put patches there)"},
          f"a file writable by others is refused: {files['open.so']}")
    check(files["theirs.so"]["error"] == "refused: owned by uid 65534, not root (only root may put patches there)",
          f"a file of another user is refused: {files['theirs.so']}")
    # more events in the directory: rescans that must not try the failed files again
    for i in range(3):
        with open(os.path.join(pdir, f"unrelated{i}.txt"), "w") as f:
            f.write("x")
    os.utime(pdir)
    # a marker the scans apply: once it is applied, the scans the events caused have run
    marker = os.path.join(build, "marker.so")
    shutil.copyfile(os.environ["PATCH"], marker)
    drop(marker, "zz-marker.so")
    check(wait_for(lambda: "zz-marker.so" in files_state()[0], 10), "the directory was scanned again")
    for f, why in (("garbage.so", "not applied"), ("unpinned.so", "not applied"), ("open.so", "not applied"),
                   ("theirs.so", "not applied")):
        n = log_count(f"patch directory: {pdir}/{f} {why}")
        check(n == 1, f"{f}: one log line, not one per scan ({n})")
    r, out, err = ulpctl(d.socket, "status")
    check(f"patch directory {pdir}:\n" in out and f"  {NAME}.so: applied as {NAME}\n" in out and
          "  open.so: not applied: refused: writable by others (only root may put patches there)\n" in out,
          "status as lines lists the directory's files")
    r, out, err = ulpctl(d.socket, "status", "--prometheus")
    check(f'ulpd_patch_dir_file{{file="{NAME}.so",state="applied"}} 1\n' in out and
          'ulpd_patch_dir_file{file="garbage.so",state="failed"} 1\n' in out,
          "status --prometheus carries the directory's files")

    # a failed file that changes is tried again: the refused one made root's only
    os.chmod(os.path.join(pdir, "open.so"), 0o644)
    check(wait_for(lambda: files_state()[0]["open.so"]["state"] == "failed" and
                   "already applied from" in files_state()[0]["open.so"]["error"], 10),
          "a refused file that changed is looked at again (and the same patch twice is refused)")
    os.unlink(os.path.join(pdir, "open.so"))

    # removing the file reverts everywhere
    os.unlink(os.path.join(pdir, NAME + ".so"))
    check(settled(st1, 1) and settled(st2, 1), "removing the file reverts both victims")
    files, _ = files_state()
    check(NAME + ".so" not in files, "and status no longer lists it")
    check(d.alive(), "ulpd still runs")

    # across restarts: kept while the file stays, reverted when it went meanwhile
    drop(patch, NAME + ".so")
    check(settled(st1, 2) and settled(st2, 2), "the file put back patches both again")
    check(d.stop() == 0, "ulpd stopped")
    d.start()
    check(files_state()[0].get(NAME + ".so", {}).get("state") == "applied" and settled(st1, 2) and settled(st2, 2),
          "a restarted ulpd keeps the patch of a file still there")
    check(d.stop() == 0, "ulpd stopped again")
    os.unlink(os.path.join(pdir, NAME + ".so"))
    d.start()
    check(settled(st1, 1) and settled(st2, 1), "a file removed while no ulpd ran: the next one reverts it")
    check(os.listdir(os.path.join(d.state_dir, "patches")) == [], "and forgets its sticky patch")
finally:
    vs.kill()
check(d.stop() == 0, "ulpd stopped cleanly")
shutil.rmtree(tmp, ignore_errors=True)
