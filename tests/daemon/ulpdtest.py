# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers for the ulpd integration tests: start a daemon on a temporary socket,
speak its protocol (daemon/protocol.h), and skip (exit 77) with a reason."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77

# How much longer deadlines are on a loaded machine: $ULP_TEST_SLOWDOWN (scripts/run-tests
# sets it), else runnable tasks per core rounded up, 1 to 10.
try:
    SLOWDOWN = max(1, min(100, int(os.environ["ULP_TEST_SLOWDOWN"])))
except (KeyError, ValueError):
    SLOWDOWN = max(1, min(10, -int(-os.getloadavg()[0] // (os.cpu_count() or 1))))


def _own_control_key():
    """Control blocks signed with a key of this test's own (docs/testing.md): every ulpd
    and ulpctl this test starts shares it, any other ulpd on the machine (another test's,
    a benchmark's, an installed one) finds this test's victims unsigned and leaves them
    alone in its own work (recovery, objects loaded later, sticky patches). Kept when
    the test was given one (a shell test's, tests/lib.sh); only root signs blocks."""
    if os.environ.get("ULP_CONTROL_KEY") or os.geteuid() != 0:
        return
    d = tempfile.mkdtemp(prefix="ulp-key-")
    path = os.path.join(d, "control.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(16))
    os.close(fd)

    def remove():
        try:
            os.unlink(path)
            os.rmdir(d)
        except OSError:
            pass
    atexit.register(remove)
    os.environ["ULP_CONTROL_KEY"] = path


_own_control_key()


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(SKIP)


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print(f"ok: {msg}")


def need_root():
    if os.geteuid() != 0:
        skip("needs root (ptrace of other users' processes, setpriv)")


def env_path(name):
    p = os.environ.get(name)
    if not p or not os.path.exists(p):
        fail(f"${name} not set or missing: {p}")
    return p


def scratch_dir(prefix):
    """A fresh temporary directory, removed when the test exits however it ends (fail()
    and check() exit through sys.exit, which runs atexit)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


class Daemon:
    """ulpd on a socket in a fresh temporary directory (removed at exit, after ulpd is
    reaped; a directory passed as tmp is the caller's)."""

    def __init__(self, extra_args=("--no-recover",), env=None, state_dir=None, tmp=None):
        self.ulpd = env_path("ULPD")
        self.tmp = tmp or scratch_dir("ulpd-test-")
        os.chmod(self.tmp, 0o755)
        self.socket = os.path.join(self.tmp, "ulpd.sock")
        self.state_dir = state_dir or os.path.join(self.tmp, "state")
        self.log = os.path.join(self.tmp, "ulpd.log")
        # no patch directory but a test's own (--patch-dir in extra_args comes later and wins)
        self.args = [self.ulpd, "--socket", self.socket, "--state-dir", self.state_dir, "--debug",
                     "--patch-dir", "", *extra_args]
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_", "JOURNAL_STREAM"))}
        self.env.update(env or {})
        self.proc = None

    def start(self, wait=True):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self.logf, stderr=self.logf)
        # a test that fails (exits) early must not leave its ulpd running
        atexit.register(self._reap, self.proc)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10):
        timeout *= SLOWDOWN
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                fail(f"ulpd exited with {self.proc.returncode}:\n{self.read_log()}")
            try:
                c = Client(self.socket)
                c.request({"method": "ping"})
                c.close()
                return
            except OSError:
                time.sleep(0.05)
        fail(f"ulpd did not answer within {timeout}s:\n{self.read_log()}")

    @staticmethod
    def _reap(proc):
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        timeout *= SLOWDOWN
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                fail(f"ulpd did not stop on {signal.Signals(sig).name} within {timeout} s\n{self.read_log()}")
        return self.proc.returncode

    def kill9(self):
        self.proc.kill()
        self.proc.wait()


class Client:
    def __init__(self, path, timeout=60):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout * SLOWDOWN)
        self.s.connect(path)
        self.buf = b""

    def close(self):
        self.s.close()

    def send(self, msg, fd=None):
        if isinstance(msg, dict):
            msg = dict(msg)
            msg.setdefault("version", 1)
            data = (json.dumps(msg) + "\n").encode()
        else:
            data = msg
        if isinstance(fd, (list, tuple)):
            socket.send_fds(self.s, [data], list(fd))
        elif fd is not None:
            socket.send_fds(self.s, [data], [fd])
        else:
            self.s.sendall(data)

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def request(self, msg, fd=None, progress=None):
        """Sends msg, returns the final reply (progress/started messages go to progress)."""
        self.send(msg, fd)
        while True:
            m = self.recv()
            if m is None:
                raise ConnectionResetError("ulpd closed the connection")
            if m.get("type") in ("progress", "started"):
                if progress:
                    progress(m)
                continue
            return m

    def status(self, **fields):
        """A status, in parts (as ulpctl asks for it: other users of ulp may have patched
        many processes of the machine), put together: the final "status" message with
        the processes of every part."""
        r = self.request({"method": "status", "parts": True, **fields})
        procs = []
        while r and r.get("type") == "status_part":
            procs += r.get("processes", [])
            r = self.recv()
        if r and r.get("type") == "status":
            r["processes"] = procs + r.get("processes", [])
        return r


def open_proof(pid, mode=os.O_RDWR):
    """What ulpctl sends to prove ptrace access to pid: /proc/PID/mem opened with our own
    credentials (the kernel decides), and a pidfd. Raises PermissionError when refused."""
    pidfd = os.pidfd_open(pid)
    try:
        mem = os.open(f"/proc/{pid}/mem", mode | os.O_CLOEXEC)
    except OSError:
        os.close(pidfd)
        raise
    return [mem, pidfd]


def victim_status(path):
    """The victim's own view: {'v1': n, 'v2': n, 'bad': n, ...} from its status file."""
    try:
        with open(path) as f:
            line = f.read().strip()
    except OSError:
        return None
    if not line:
        return None
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split())}


def thread_states(pid):
    """What each thread of pid does now, for a failure's message: tid, name, state, wchan
    and tracer."""
    out = []
    try:
        tids = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
    except OSError as e:
        return f"process {pid}: {e.strerror}"
    for tid in tids:
        t = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{t}/status") as f:
                st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
            with open(f"{t}/wchan") as f:
                wchan = f.read() or "-"
        except OSError:
            continue
        out.append(f"{tid} {st.get('Name')} {st.get('State')} wchan={wchan} tracer={st.get('TracerPid')}")
    return "; ".join(out)


def wait_for(pred, timeout, step=0.05):
    """pred() true within timeout seconds (times SLOWDOWN); returns its last value."""
    end = time.time() + timeout * SLOWDOWN
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def patch_state(sock, pid, name):
    """The state of patch name in process pid as ulpd's status says ("patched",
    "transition", ...), None when it has none, "unreachable" when ulpd does not answer:
    a connection per look, since one kept through a long wait may be closed as idle."""
    try:
        c = Client(sock)
        r = c.request({"method": "status", "pid": pid})
        c.close()
    except OSError:
        return "unreachable"
    for p in r.get("processes", []):
        for x in p["patches"]:
            if x["name"] == name:
                return x["state"]
    return None


def build_id(path):
    """The GNU build-id of an ELF file as readelf prints it, None when it has none."""
    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:")[1].strip()
    return None
