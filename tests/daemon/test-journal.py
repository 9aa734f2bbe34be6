#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpd under a journal stream, as systemd starts a service: its records reach the
journal with the fields ULP_PID= and ULP_PATCH=, so an operator can ask journalctl
what ulpd did to one process. A journald is started for the test if none runs."""

import json
import os
import socket
import subprocess
import time
import uuid

from ulpdtest import Client, Daemon, check, need_root, skip, victim_status, wait_for, fail

need_root()
JOURNALD = "/lib/systemd/systemd-journald"
SOCKET = "/run/systemd/journal/stdout"


def journal_stream(identifier):
    """A stream to journald as systemd makes one for a service's stderr (the header of
    the native stream protocol), and $JOURNAL_STREAM naming it."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(SOCKET)
    s.sendall(f"{identifier}\n\n6\n0\n0\n0\n0\n".encode())
    st = os.fstat(s.fileno())
    return s, f"{st.st_dev}:{st.st_ino}"


def journald_running():
    try:
        s, _ = journal_stream("ulpd-test-probe")
        s.close()
        return True
    except OSError:
        return False


journald = None
if not journald_running():
    if not os.access(JOURNALD, os.X_OK):
        skip("no systemd-journald to receive ulpd's records")
    journald = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_for(journald_running, 5):
        journald.kill()
        skip("systemd-journald does not start in this environment")

tag = "ulpd-test-" + uuid.uuid4().hex[:8]
stream, stream_id = journal_stream(tag)
d = Daemon(env={"JOURNAL_STREAM": stream_id})
# stderr is the journal stream, as under systemd; stdout too.
d.logf = None
d.proc = subprocess.Popen(d.args, env=d.env, stdout=stream.fileno(), stderr=stream.fileno())
d.wait_ready()
victim = None
try:
    st = os.path.join(d.tmp, "victim.status")
    victim = subprocess.Popen([os.environ["VICTIM"], st, "4", "200"])
    check(wait_for(lambda: (victim_status(st) or {}).get("v1", 0) > 0, 5), "victim started")
    c = Client(d.socket)
    fd = os.open(os.environ["PATCH"], os.O_RDONLY)
    r = c.request({"method": "apply", "pids": [victim.pid], "name": "daemon-fix.so", "wait": True,
                   "options": {}}, fd=fd)
    check(r["results"][0]["ok"], "apply through ulpd")
    r = c.request({"method": "revert", "pids": [victim.pid], "name": "daemon-fix", "wait": True})
    check(r["results"][0]["ok"], "revert through ulpd")

    def records():
        out = subprocess.run(["journalctl", "--no-pager", "-o", "json", f"ULP_PID={victim.pid}"],
                             capture_output=True, text=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    check(wait_for(lambda: len(records()) >= 2, 5), f"journal records carry ULP_PID={victim.pid}")
    recs = records()
    check(any(r.get("ULP_PATCH") == "daemon-fix" for r in recs), "and ULP_PATCH=daemon-fix")
    check(all(r.get("SYSLOG_IDENTIFIER", "").startswith("ulpd") or r.get("_COMM") == "ulpd" for r in recs),
          "written by ulpd")
    for r in recs[:4]:
        print("journal:", r.get("MESSAGE"))
finally:
    if victim:
        victim.kill()
        victim.wait()
    d.stop()
    stream.close()
    if journald:
        journald.terminate()
        journald.wait()
