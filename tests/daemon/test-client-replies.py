#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpctl against a socket that does not answer as ulpd does (a stand-in server in this
test): each broken reply is one line in ulp's words, never the C library's errno text
(docs/architecture.md, "Failing"): a malformed message, one larger than the protocol
allows (daemon/protocol.h), a connection closed before any reply."""

import os
import socket
import subprocess
import threading

from ulpdtest import check, scratch_dir

ULPCTL = os.environ["ULPCTL"]
tmp = scratch_dir("ulpctl-replies-")
path = os.path.join(tmp, "fake.sock")
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(4)


def serve(reply):
    """Answers the next connection's request with reply (bytes), then closes it."""
    def run():
        c, _ = srv.accept()
        c.settimeout(30)
        try:
            c.recv(65536)
            if reply:
                c.sendall(reply)
        except OSError:
            pass
        c.close()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def status_through(reply):
    th = serve(reply)
    r = subprocess.run([ULPCTL, "status"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, ULP_SOCKET=path))
    th.join(30)
    return r.returncode, r.stderr


for what, reply, line in (
        ("a malformed message", b"{not json\n",
         "ulpctl: no complete reply from ulpd: a message was malformed or larger than 256 KiB\n"),
        ("a message over the limit", b"{\"type\":\"" + b"x" * (300 * 1024) + b"\"}\n",
         "ulpctl: no complete reply from ulpd: a message was malformed or larger than 256 KiB\n"),
        ("the connection closed", b"",
         "ulpctl: no complete reply from ulpd: it closed the connection\n")):
    rc, err = status_through(reply)
    check(rc != 0 and err == line, f"{what}: one line in ulp's words (exit {rc}): {err!r}")
srv.close()
