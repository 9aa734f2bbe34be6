#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes the ulp control block of a process in the fuzz target's form (the block
without its thread table: the header page, then the areas, patches and the used
function records). Also reads such a file back into a process (tests/control).

    dump-control-block.py PID OUT
"""

import struct
import sys

HEADER = 4096
AREAS_OFF = 77824      # CONTROL_OFF(areas): header, then the thread table
PATCHES_OFF = 79872
FUNCS_OFF = 119296
FUNC_SIZE = 248


def find_block(pid):
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == "/memfd:ulp-control" and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    return None


def dump(pid):
    addr = find_block(pid)
    if addr is None:
        raise SystemExit(f"process {pid} has no ulp-control mapping")
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(addr)
        hdr = mem.read(HEADER)
        n_funcs = struct.unpack_from("<I", hdr, 68)[0]
        mem.seek(addr + AREAS_OFF)
        rest = mem.read(FUNCS_OFF - AREAS_OFF + min(n_funcs, 8192) * FUNC_SIZE)
    return hdr + rest


if __name__ == "__main__":
    data = dump(int(sys.argv[1]))
    with open(sys.argv[2], "wb") as f:
        f.write(data)
