# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the operator-feature tests share: a copy of the victim with a build-id of its
own (so that --all, --missing and a patch directory reach this run's processes only,
never another run's), a patch pinned to it under a name of this run, ulpctl as root or
as an unprivileged user, and the JSON Schema of ulpctl's --json outputs."""

import json
import os
import shutil
import subprocess

from ulpdtest import SLOWDOWN, build_id, fail, victim_status, wait_for

ULPCTL = os.environ.get("ULPCTL", "")
ROOT = os.environ.get("ULP_SOURCE_ROOT", "")
UID = 65534
AS_USER = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]


def own_copy(path, directory, name=None):
    """A copy of path in directory whose build-id note carries random bytes."""
    bid = build_id(path)
    if not bid:
        fail(f"{path} has no build-id (it is linked with one; readelf is in binutils)")
    data = open(path, "rb").read()
    old = bytes.fromhex(bid)
    if data.count(old) != 1:
        fail(f"the build-id of {path} is not found exactly once in the file")
    copy = os.path.join(directory, name or os.path.basename(path))
    with open(copy, "wb") as f:
        f.write(data.replace(old, os.urandom(len(old))))
    shutil.copymode(path, copy)
    os.chmod(copy, 0o755)
    return copy


def pinned_patch(victim, name, out):
    """tests/daemon/patch.c built as name, pinned to victim's build-id (ULP_BUILD_ID)."""
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-I", os.path.join(ROOT, "include"),
                        f'-DVICTIM_BUILD_ID="{build_id(victim)}"', f'-DPATCH_NAME="{name}"',
                        os.environ["PATCH_SRC"], "-o", out], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"cannot build the pinned patch: {r.stderr}")
    os.chmod(out, 0o644)
    return out


def pinned_setup(tmp, prefix, victim_name):
    """A victim of its own in tmp (a fresh build-id, as victim_name), the patch pinned to
    it, named prefix-SUFFIX after tmp's random suffix, in tmp/build, and the Victims that
    start it: (name, patch, victims)."""
    name = prefix + "-" + os.path.basename(tmp).rsplit("-", 1)[-1]
    victim = own_copy(os.environ["VICTIM"], tmp, victim_name)
    build = os.path.join(tmp, "build")
    os.mkdir(build)
    return name, pinned_patch(victim, name, os.path.join(build, name + ".so")), Victims(tmp, victim)


class Victims:
    """The victims of one test, each writing its status file; all killed at the end."""

    def __init__(self, directory, exe):
        self.dir, self.exe, self.procs = directory, exe, []

    def start(self, prefix=(), sleeper_ms=0):
        st = os.path.join(self.dir, f"victim{len(self.procs)}.status")
        p = subprocess.Popen([*prefix, self.exe, st, "2", "200", str(sleeper_ms)])
        self.procs.append(p)
        # calls answered by either version: a patch directory's sticky patch may reach
        # a new process before its first call returns
        if not wait_for(lambda: sum((victim_status(st) or {}).get(k, 0) for k in ("v1", "v2")) > 0, 30):
            fail(f"victim {self.exe} did not start")
        if sleeper_ms and not wait_for(lambda: (victim_status(st) or {}).get("sleeper") == 1, 30):
            fail("the victim's sleeper did not start")
        return p, st

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def ulpctl(sock, *args, user=False, timeout=120):
    """ulpctl ARGS through the ulpd on sock (as uid 65534 with user): rc, stdout, stderr.
    The timeout stretches with the load: a status of every process on a busy machine is
    sent in parts, each charged to the uid's share of ulpd's time."""
    env = dict(os.environ, ULP_SOCKET=sock)
    r = subprocess.run((AS_USER if user else []) + [ULPCTL, *args], capture_output=True, text=True,
                       timeout=timeout * SLOWDOWN, env=env)
    return r.returncode, r.stdout, r.stderr


_schema = None


def valid(definition, text):
    """text (one JSON document) is valid against $defs/definition of docs/ulpctl.schema.json;
    returns the parsed document."""
    global _schema
    import jsonschema
    if _schema is None:
        with open(os.path.join(ROOT, "docs", "ulpctl.schema.json")) as f:
            _schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(_schema)
    try:
        doc = json.loads(text)
    except ValueError as e:
        fail(f"not one JSON document ({e}): {text!r}")
    sub = {"$ref": f"#/$defs/{definition}", "$defs": _schema["$defs"]}
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(sub).iter_errors(doc))
    if err is not None:
        fail(f"output does not match $defs/{definition} of docs/ulpctl.schema.json: {err.message} "
             f"at {list(err.absolute_path)}: {text}")
    return doc
