#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ulpctl status --prometheus, read by Prometheus's own parser (prometheus_client, the
python3-prometheus-client Debian package): a patched process with its state and forced
labels, a transition in progress with its stragglers, the count of processes missing a
patch (--missing), ulpd's counters of transitions and failures; a process name with a
quote and a backslash survives the escaping (docs/monitoring.md)."""

import os
import shlex
import shutil
import subprocess
import time

from fleettest import Victims, own_copy, pinned_patch, ulpctl
from ulpdtest import SLOWDOWN, Daemon, check, fail, need_root, patch_state, wait_for

need_root()
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    fail("python3-prometheus-client missing (scripts/setup-deps.sh installs it)")

d = Daemon().start()
NAME = "promfix-" + os.path.basename(d.tmp).rsplit("-", 1)[-1]
COMM = 'vi"c\\tim'   # the label escaping's test
victim = own_copy(os.environ["VICTIM"], d.tmp, COMM)
patch = pinned_patch(victim, NAME, os.path.join(d.tmp, NAME + ".so"))
vs = Victims(d.tmp, victim)


def scrape():
    r, out, err = ulpctl(d.socket, "status", "--prometheus", "--missing", patch)
    if r != 0:
        fail(f"status --prometheus: exit {r}: {err}")
    try:
        fams = {f.name: f for f in text_string_to_metric_families(out)}
    except Exception as e:   # the parser's own verdict on the whole text
        fail(f"the Prometheus parser refuses the output ({e}):\n{out}")
    return fams, out


def samples(fams, family, **labels):
    return [s for s in fams[family].samples if all(s.labels.get(k) == v for k, v in labels.items())]


try:
    v1, _ = vs.start()
    v2, _ = vs.start()
    # long enough to scrape during the transition, well within its timeout
    v3, _ = vs.start(sleeper_ms=min(2000 * SLOWDOWN, 8000))
    r, _, err = ulpctl(d.socket, "apply", "-p", str(v1.pid), patch)
    check(r == 0, f"v1 patched: {err.strip()}")
    r, _, _ = ulpctl(d.socket, "apply", "-p", str(v1.pid), patch)
    check(r == 1, "a second apply to v1 fails: one failure for ulpd's counter")
    r, out, err = ulpctl(d.socket, "apply", "-p", str(v3.pid), patch, "--no-wait", "--timeout", "120")
    check(r == 0, f"v3's transition started: {out.strip()} {err.strip()}")
    check(wait_for(lambda: patch_state(d.socket, v3.pid, NAME) == "transition", 10), "v3 is in transition")

    fams, text = scrape()
    for fam, kind in (("ulp_patch", "gauge"), ("ulp_stragglers", "gauge"), ("ulp_transitions_in_progress", "gauge"),
                      ("ulp_control_blocks_refused", "gauge"), ("ulp_patch_missing", "gauge"),
                      ("ulpd_transitions", "counter"), ("ulpd_transitions_failed", "counter"),
                      ("ulpd_invariant_failures", "counter")):
        check(fam in fams and fams[fam].type == kind and fams[fam].documentation,
              f"{fam}: # HELP and # TYPE {kind}")
    s = samples(fams, "ulp_patch", pid=str(v1.pid), patch=NAME)
    check(len(s) == 1 and s[0].labels == {"pid": str(v1.pid), "comm": COMM, "patch": NAME, "state": "patched",
                                          "forced": "false"} and s[0].value == 1,
          f"v1: patched, not forced, its name unescaped back: {s}")
    s = samples(fams, "ulp_patch_applied_timestamp_seconds", pid=str(v1.pid), patch=NAME)
    check(len(s) == 1 and s[0].labels["uid"] == "0" and abs(s[0].value - time.time()) < 120 * SLOWDOWN,
          f"v1: when its patch was applied, and for uid 0: {s}")
    s = samples(fams, "ulp_patch", pid=str(v3.pid), patch=NAME)
    check(len(s) == 1 and s[0].labels["state"] == "transition", f"v3: in transition: {s}")
    s = samples(fams, "ulp_stragglers", pid=str(v3.pid), patch=NAME)
    check(len(s) == 1 and s[0].value >= 1, f"v3's stragglers counted: {s}")
    check(samples(fams, "ulp_transitions_in_progress")[0].value >= 1, "transitions in progress counted")
    check(not samples(fams, "ulp_patch", pid=str(v2.pid)), "v2 (no ulp state) has no ulp_patch sample")
    s = samples(fams, "ulp_patch_missing", patch=NAME)
    check(len(s) == 1 and s[0].value == 2, f"missing: v2 (not applied) and v3 (in transition): {s}")
    tot = samples(fams, "ulpd_transitions")[0].value
    failed = samples(fams, "ulpd_transitions_failed")[0].value
    check(tot >= 2 and failed == 1, f"ulpd counted its transitions ({tot}) and the one failure ({failed})")
    check(samples(fams, "ulpd_invariant_failures")[0].value == 0, "no broken invariant")

    check(wait_for(lambda: patch_state(d.socket, v3.pid, NAME) == "patched", 20), "v3's transition finished")
    fams, _ = scrape()
    s = samples(fams, "ulp_patch_missing", patch=NAME)
    check(len(s) == 1 and s[0].value == 1, f"then only v2 misses the patch: {s}")
    check(not samples(fams, "ulp_stragglers", pid=str(v3.pid)), "and v3 has no stragglers sample")

    # the example unit's command (examples/monitoring), as systemd would run it
    unit = open(os.path.join(os.environ["ULP_SOURCE_ROOT"], "examples", "monitoring", "ulp-metrics.service")).read()
    cmd = [l[len("ExecStart="):] for l in unit.splitlines() if l.startswith("ExecStart=")][0]
    outdir = os.path.join(d.tmp, "textfile")
    os.mkdir(outdir)
    cmd = (cmd.replace("$ULP_METRICS_MISSING", f"--missing {patch}").replace("$$", "$")
              .replace("/var/lib/prometheus/node-exporter", outdir).replace(" ulpctl ", f" {os.environ['ULPCTL']} "))
    r = subprocess.run(shlex.split(cmd), env=dict(os.environ, ULP_SOCKET=d.socket), capture_output=True, text=True)
    check(r.returncode == 0 and os.listdir(outdir) == ["ulp.prom"], f"the example unit's command writes ulp.prom: {r.stderr}")
    with open(os.path.join(outdir, "ulp.prom")) as f:
        fams = {x.name: x for x in text_string_to_metric_families(f.read())}
    check(samples(fams, "ulp_patch_missing", patch=NAME)[0].value == 1, "which the parser reads, --missing included")
finally:
    vs.kill()
check(d.stop() == 0, "ulpd stopped cleanly")
shutil.rmtree(d.tmp, ignore_errors=True)
