#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Mutated patch files against a live victim that checks itself.

A valid patch (patch-canary.so) is mutated (bit and byte flips and odd values in the
ELF header, program headers, dynamic section, relocations, symbols and ulp metadata
sections; random truncations) and each mutant is applied with ulpctl --direct to a
victim that checksums its own code and data (victim-canary.c). After each one the
victim must be alive, its canary intact and its compute() right: 20 when nothing is
applied, and again 20 after the revert of a mutant that applied. Every refusal must
be exit 1 with one line; for every fourth mutant, check must refuse the file exactly
when apply does, in the same words.

Environment: MUTATE_COUNT (default 300), MUTATE_SECONDS (default 60), MUTATE_SEED
(default: random, printed). ULPCTL, VICTIM_CANARY, PATCHDIR from meson.
"""

import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

ULPCTL = os.environ["ULPCTL"]
VICTIM = os.environ["VICTIM_CANARY"]
PATCH = os.path.join(os.environ["PATCHDIR"], "patch-canary.so")
COUNT = int(os.environ.get("MUTATE_COUNT", "300"))
SECONDS = float(os.environ.get("MUTATE_SECONDS", "60"))
SEED = int(os.environ.get("MUTATE_SEED", str(random.randrange(1 << 32))))
STEP_TIMEOUT = 60


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


class Victim:
    def __init__(self, work):
        self.log = os.path.join(work, f"victim-{time.monotonic_ns()}.log")
        self.out = open(self.log, "w")
        self.proc = subprocess.Popen([VICTIM], stdout=self.out, stderr=subprocess.STDOUT)
        if not self.wait_ticks(2, 10):
            fail("the victim did not start")

    def lines(self):
        """The complete lines: a read racing a write that crosses a page boundary sees
        the line's first part alone (the file grows a page at a time), which is not a
        line the victim printed."""
        with open(self.log, errors="replace") as f:
            return [l for l in f.read().split("\n")[:-1] if l.startswith("tick ")]

    def wait_ticks(self, n, timeout):
        """Waits until n more complete lines than now; returns the last one."""
        start = len(self.lines())
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = self.lines()
            if len(v) >= start + n:
                return v[-1]
            if self.proc.poll() is not None:
                return None
            time.sleep(0.005)
        return None

    def state(self):
        """None when alive and running, else what is wrong."""
        if self.proc.poll() is not None:
            return f"dead ({self.proc.returncode})"
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{self.proc.pid}/status") as f:
                traced = "TracerPid:\t0" not in f.read()
        except OSError:
            return "gone"
        if st in ("t", "T", "Z"):
            return f"left in state {st}"
        if traced:
            return "left traced"
        return None

    def verdict(self):
        """(dead, corrupted, compute) from a line printed after now."""
        line = self.wait_ticks(2, 20)
        bad = self.state()
        if line is None or bad:
            return bad or "stopped printing", None, None
        f = dict(kv.split("=") for kv in line.split()[2:])
        return None, f["canary"] != "ok", int(f["compute"])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.out.close()


def sections(b):
    """{name: (offset, size, entsize)} of the file's section headers, when readable."""
    out = {}
    try:
        shoff, = struct.unpack_from("<Q", b, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", b, 0x3A)
        stroff, = struct.unpack_from("<Q", b, shoff + shstrndx * 64 + 24)
        for i in range(shnum):
            sh = shoff + i * 64
            name, typ, flags, addr, off, size = struct.unpack_from("<IIQQQQ", b, sh)
            ent, = struct.unpack_from("<Q", b, sh + 56)
            end = b.index(b"\0", stroff + name)
            out[b[stroff + name:end].decode(errors="replace")] = (off, size, ent)
            out[f"#shdr{i}"] = (sh, 64, 8)
    except (struct.error, ValueError, IndexError):
        pass
    return out


def regions(b):
    """Where mutations go: (offset, size, granule) with a weight each."""
    phoff, = struct.unpack_from("<Q", b, 0x20)
    phnum, = struct.unpack_from("<H", b, 0x38)
    secs = sections(b)
    r = [((0, 64, 8), 2), ((phoff, phnum * 56, 8), 6)]
    for name, w in ((".dynamic", 4), (".rela.dyn", 8), (".rela.plt", 2), (".dynsym", 3), (".dynstr", 1),
                    ("ulp_info", 3), ("ulp_funcs", 5), ("ulp_refs", 4), (".symtab", 1),
                    (".rodata", 1), (".data", 2), (".got", 2)):
        if name in secs and secs[name][1] > 0:
            r.append(((secs[name][0], secs[name][1], 8), w))
    shdrs = [v for k, v in secs.items() if k.startswith("#shdr")]
    for s in shdrs:
        r.append(((s[0], s[1], 8), 0.3))
    return r


INTERESTING = [0, 1, 2, 7, 8, 0x10, 0x18, 0x40, 0x7F, 0x80, 0xFF, 0x1000, 0xFFFF, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFF8]


def mutate(orig, rng):
    b = bytearray(orig)
    if rng.random() < 0.08:
        return bytes(b[:rng.randrange(1, len(b))]), "truncate"
    reg = regions(b)
    kinds = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        (off, size, gran), = rng.choices([x for x, _ in reg], weights=[w for _, w in reg])
        if size <= 0 or off + size > len(b):
            continue
        pos = off + rng.randrange(size)
        k = rng.random()
        if k < 0.35:
            b[pos] ^= 1 << rng.randrange(8)
            kinds.append("bit")
        elif k < 0.6:
            b[pos] = rng.randrange(256)
            kinds.append("byte")
        elif k < 0.9:
            pos = off + (rng.randrange(size) // gran) * gran
            if pos + 8 <= len(b):
                v = rng.choice(INTERESTING)
                if rng.random() < 0.3:
                    v = (struct.unpack_from("<Q", b, pos)[0] + rng.choice((-16, -8, -1, 1, 8, 16, 0x1000))) % (1 << 64)
                struct.pack_into("<Q", b, pos, v)
                kinds.append("word")
        else:
            n = rng.randrange(1, 9)
            b[pos:pos + n] = bytes(rng.randrange(256) for _ in range(n))[:len(b) - pos]
            kinds.append("bytes")
    return bytes(b), "+".join(kinds) or "none"


def run(args):
    try:
        p = subprocess.run([ULPCTL, "--direct", *args], capture_output=True, text=True,
                           timeout=STEP_TIMEOUT, errors="replace")
    except subprocess.TimeoutExpired:
        return None, "", "timed out"
    return p.returncode, p.stdout, p.stderr


def main():
    sys.stdout.reconfigure(line_buffering=True)
    work = tempfile.mkdtemp(prefix="ulp-mutate-")
    rng = random.Random(SEED)
    print(f"seed {SEED} (MUTATE_SEED={SEED} repeats this run), up to {COUNT} mutations or {SECONDS:.0f} s")
    orig = open(PATCH, "rb").read()
    stats = dict(mutations=0, refused=0, applied=0, timeouts=0, dead=0, corrupted=0, wrong=0, bad_refusals=0,
                 crashes=0, revert_failed=0, check_differs=0)
    findings = []
    v = Victim(work)
    start = time.monotonic()

    def finding(kind, what, data):
        path = os.path.join(work, f"finding-{len(findings)}.so")
        with open(path, "wb") as f:
            f.write(data)
        findings.append(path)
        stats[kind] += 1
        print(f"  {kind}: mutation {stats['mutations']} ({what}): kept as {path}")

    try:
        # The unmutated patch applies and reverts: the test itself works.
        rc, out, err = run(["apply", "-p", str(v.proc.pid), PATCH])
        dead, bad, c = v.verdict()
        if rc != 0 or dead or bad or c != 30:
            fail(f"the intact patch: exit {rc} {err.strip()} victim {dead} canary bad {bad} compute {c}")
        rc, out, err = run(["revert", "-p", str(v.proc.pid), "canary-fix"])
        dead, bad, c = v.verdict()
        if rc != 0 or dead or bad or c != 20:
            fail(f"revert of the intact patch: exit {rc} {err.strip()} victim {dead} canary bad {bad} compute {c}")

        while stats["mutations"] < COUNT and time.monotonic() - start < SECONDS:
            data, what = mutate(orig, rng)
            stats["mutations"] += 1
            path = os.path.join(work, "mutant.so")
            with open(path, "wb") as f:
                f.write(data)
            checked = None
            if stats["mutations"] % 4 == 0:
                # check must refuse what apply refuses, in the same words.
                crc, _, cerr = run(["check", "-p", str(v.proc.pid), path])
                clines = [l for l in cerr.splitlines() if not l.startswith("warning:")]
                if crc == 1 and clines and "would block the transition" not in clines[0]:
                    checked = clines[0]
                elif crc not in (0, 1, 3):
                    finding("crashes", f"{what}: ulpctl check exit {crc}: {cerr.strip()[:200]}", data)
            rc, out, err = run(["apply", "-p", str(v.proc.pid), path])
            lines = [l for l in err.splitlines() if not l.startswith("warning:")]
            if checked and (rc != 1 or lines != [checked]):
                finding("check_differs", f"{what}: check said '{checked}', apply exit {rc} {err.strip()[:200]}", data)
            elif (stats["mutations"] % 4 == 0 and not checked and rc == 1 and lines and
                  lines[0].startswith(("ulpctl: bad patch", "ulpctl: patch "))):
                finding("check_differs", f"{what}: check passed, apply refused the file: {lines[0][:200]}", data)
            name = None
            if rc == 0:
                stats["applied"] += 1
                words = out.split()
                name = words[1] if len(words) > 1 and words[0] == "applied" else None
            elif rc == 1 and len(lines) == 1:
                stats["refused"] += 1
            elif rc == 3 and len(lines) == 1 and "timed out" in lines[0]:
                # Not about the file: the machine was too slow to stop the victim in
                # time (ulpctl's EXIT_TIMEDOUT). The victim is still checked below.
                stats["timeouts"] += 1
            elif rc is None or rc < 0 or rc >= 128:
                finding("crashes", f"{what}: ulpctl exit {rc}: {err.strip()[:200]}", data)
            else:
                finding("bad_refusals", f"{what}: exit {rc}, {len(lines)} lines: {err.strip()[:200]}", data)

            dead, bad, c = v.verdict()
            if not dead and not bad and rc == 0 and name:
                for _ in range(3):   # a stop that timed out on a loaded machine: again
                    rrc, _, rerr = run(["revert", "-p", str(v.proc.pid), name])
                    if rrc != 3:
                        break
                if rrc != 0:
                    finding("revert_failed", f"{what}: revert of {name}: {rerr.strip()[:200]}", data)
                dead, bad, c = v.verdict()
            if dead:
                finding("dead", f"{what}: victim {dead}", data)
            elif bad:
                finding("corrupted", f"{what}: canary changed", data)
            elif c != 20:
                finding("wrong", f"{what}: compute()={c} after the mutant, expected 20", data)
            if dead or bad or c != 20:
                v.kill()
                v = Victim(work)
    finally:
        v.kill()

    took = time.monotonic() - start
    print(" ".join(f"{k}={n}" for k, n in stats.items()) + f" in {took:.0f} s, seed {SEED}")
    problems = sum(stats[k] for k in ("dead", "corrupted", "wrong", "bad_refusals", "crashes", "revert_failed",
                                      "check_differs"))
    if problems:
        fail(f"{problems} mutation(s) hurt the victim or were not refused cleanly; inputs kept in {work}")
    if stats["mutations"] < min(COUNT, 20):
        fail(f"only {stats['mutations']} mutations ran in {SECONDS:.0f} s")
    shutil.rmtree(work, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
