/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Whether ulp can redirect a function ulp-build replaces (ulp-build-diff.c): the
 * patcher's own rule (patcher/entry-check.h), applied to the function's bytes and the
 * symbols of the binary's file, so that ulp-build refuses what `ulpctl check` would. */

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patcher/entry-check.h"
#include "ulpbuild/ulp-build-diff.h"

/* Reads n bytes at vaddr of the file as its PT_LOAD segments map them; fewer when the
 * segment's file image ends before. Returns how many. */
static size_t read_vaddr(Elf *e, int fd, uint64_t vaddr, uint8_t *buf, size_t n) {
        size_t nph;

        if (elf_getphdrnum(e, &nph) < 0)
                return 0;
        for (size_t i = 0; i < nph; i++) {
                GElf_Phdr ph;
                if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD || vaddr < ph.p_vaddr ||
                    vaddr - ph.p_vaddr >= ph.p_filesz)
                        continue;
                uint64_t left = ph.p_filesz - (vaddr - ph.p_vaddr);
                ssize_t got = pread(fd, buf, n < left ? n : (size_t)left, (off_t)(ph.p_offset + (vaddr - ph.p_vaddr)));
                return got > 0 ? (size_t)got : 0;
        }
        return 0;
}

void check_redirect(const char *name, const char *file, unsigned pos) {
        static SymTab *st;
        static Elf *e;
        static int fd = -1;
        char msg[512];
        Relocation rel;
        Symbol sym;
        int r;

        if (!st) {
                r = symtab_open(binary_path, &st);
                if (r < 0)
                        die("cannot read the symbols of %s: %s", binary_path, strerror(-r));
                fd = open(binary_path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || !(e = elf_begin(fd, ELF_C_READ, NULL)))
                        die("cannot open %s", binary_path);
        }
        r = symtab_lookup(st, name, pos, &sym);
        if (r < 0)
                refuse("%s() of %s is not in the symbol table of %s as ulp looks it up (position %u): %s", name, file,
                       binary_path, pos, strerror(-r));
        size_t pad = entry_pad_after(st, &sym);
        uint8_t *code = xcalloc(sym.size + pad, 1);
        size_t got = read_vaddr(e, fd, sym.value, code, sym.size + pad);
        if (got < sym.size)
                refuse("%s() of %s: its %" PRIu64 " bytes are not in the file image of %s", name, file, sym.size,
                       binary_path);
        r = entry_check(st, name, &sym, code, got - sym.size, sym.value, &rel, msg, sizeof(msg));
        free(code);
        if (r < 0)
                refuse("the fix changes %s() of %s, and ulpctl would refuse it: %s", name, file, msg);
}
