#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""mutate-rels.py SRC DST type|where: a copy of an ulp-build patch whose first ulp_rels
record has an unknown type, or a field in the patch's .bss (outside its file image)."""
import struct, subprocess, sys
src, dst, what = sys.argv[1], sys.argv[2], sys.argv[3]
secs = {}
for line in subprocess.run(["readelf", "-SW", src], capture_output=True, text=True, check=True).stdout.splitlines():
    w = line.replace("[ ", "[").split()
    if len(w) > 5 and w[0].startswith("[") and w[0] != "[Nr]":
        secs[w[1]] = (int(w[3], 16), int(w[4], 16), int(w[5], 16))   # addr, offset, size
data = bytearray(open(src, "rb").read())
addr, off, size = secs["ulp_rels"]
if what == "type":
    struct.pack_into("<I", data, off + 32, 7)
elif what == "where":
    raddr, roff, rsize = secs[".rela.dyn"]
    for e in range(roff, roff + rsize, 24):
        r_offset, r_info, r_addend = struct.unpack_from("<QQq", data, e)
        if r_offset == addr + 24:
            struct.pack_into("<q", data, e + 16, secs[".bss"][0] + 4)
            break
    else:
        sys.exit("no relocation of ulp_rels[0].where")
open(dst, "wb").write(data)
