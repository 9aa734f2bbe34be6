# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpdtest's scratch directories go away with the test that made them, however it ends:
a test that passes, one that fails (fail() exits), one that raises. Each way runs as a
child with TMPDIR pointing at a directory of this test's own, which must be empty
afterwards; ulpd is started and left running, as a failing test leaves it."""

import os
import subprocess
import sys
import tempfile

from ulpdtest import check, env_path, fail

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = """
import sys
from ulpdtest import Daemon, fail
d = Daemon().start()
open(d.tmp + "/marker", "w").close()
how = sys.argv[1]
if how == "fail":
    fail("on purpose")
if how == "raise":
    raise RuntimeError("on purpose")
d.stop()
"""

env_path("ULPD")
with tempfile.TemporaryDirectory(prefix="ulp-scratch-") as top:
    for how, rc in (("pass", 0), ("fail", 1), ("raise", 1)):
        env = dict(os.environ, TMPDIR=top, PYTHONPATH=HERE)
        p = subprocess.run([sys.executable, "-c", CHILD, how], env=env, capture_output=True, text=True,
                           timeout=120)
        if p.returncode != rc:
            fail(f"{how}: exit {p.returncode}, expected {rc}: {p.stdout}{p.stderr}")
        left = os.listdir(top)
        check(not left, f"a test that ends by {how}: no scratch directory left ({left})")
print("PASS")
