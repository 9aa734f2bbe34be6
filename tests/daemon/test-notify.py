#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpd tells systemd READY=1 once it listens, STATUS= what it does, WATCHDOG=1 when
WATCHDOG_USEC is set, and STOPPING=1 on SIGTERM, through $NOTIFY_SOCKET."""

import os
import signal
import socket
import time

from ulpdtest import Client, Daemon, check, fail


def collect(sock, until, timeout):
    msgs = []
    end = time.time() + timeout
    while time.time() < end:
        sock.settimeout(max(0.01, end - time.time()))
        try:
            data = sock.recv(4096).decode()
        except socket.timeout:
            break
        msgs.extend(data.split("\n"))
        if any(m.startswith(until) for m in msgs):
            break
    return msgs


d = Daemon()
notify = os.path.join(d.tmp, "notify")
ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ns.bind(notify)

# WATCHDOG_PID must name ulpd: fork, set it in the child, then exec.
pid = os.fork()
if pid == 0:
    env = dict(d.env, NOTIFY_SOCKET=notify, WATCHDOG_USEC="400000", WATCHDOG_PID=str(os.getpid()))
    fd = os.open(d.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.execve(d.ulpd, d.args, env)

msgs = collect(ns, "READY=1", 10)
check("READY=1" in msgs, f"READY=1 received ({msgs})")
check(any(m.startswith("STATUS=") for m in msgs), "STATUS= received")

# READY means listening: a request is answered at once.
c = Client(d.socket)
check(c.request({"method": "ping"}).get("type") == "pong", "ping answered after READY=1")
c.close()

msgs = collect(ns, "WATCHDOG=1", 2)
check("WATCHDOG=1" in msgs, "WATCHDOG=1 received with WATCHDOG_USEC=400000")

os.kill(pid, signal.SIGTERM)
msgs = collect(ns, "STOPPING=1", 5)
check("STOPPING=1" in msgs, "STOPPING=1 on SIGTERM")
_, status = os.waitpid(pid, 0)
check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "ulpd exits 0 on SIGTERM")
check(not os.path.exists(d.socket), "its own socket removed on exit")
