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
#include <sys/stat.h>
#include <unistd.h>

#include "common/errfmt.h"
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
                    vaddr - ph.p_vaddr >= ph.p_filesz || ph.p_offset > INT64_MAX - ph.p_filesz)
                        continue;
                uint64_t left = ph.p_filesz - (vaddr - ph.p_vaddr);
                ssize_t got = pread(fd, buf, n < left ? n : (size_t)left, (off_t)(ph.p_offset + (vaddr - ph.p_vaddr)));
                return got > 0 ? (size_t)got : 0;
        }
        return 0;
}

/* See ulp-build-diff.h. */
int redirect_check(const SymTab *st, Elf *e, int fd, const char *name, unsigned pos, char *msg, size_t msglen) {
        Relocation rel;
        struct stat stb;
        Symbol sym;
        size_t pad, got;
        uint8_t *code;
        int r;

        r = symtab_lookup(st, name, pos, &sym);
        if (r < 0)
                return fail(msg, msglen, r, "%s is not in the symbol table as ulp looks it up (position %u): %s", name,
                            pos, strerror(-r));
        /* A function's bytes lie in the file: a size beyond it is a lie. */
        if (fstat(fd, &stb) < 0 || sym.size > (uint64_t)stb.st_size)
                return fail(msg, msglen, -EFBIG, "function %s is %" PRIu64 " bytes, more than the file", name, sym.size);
        pad = entry_pad_after(st, &sym);
        code = xcalloc(sym.size + pad, 1);
        got = read_vaddr(e, fd, sym.value, code, sym.size + pad);
        if (got < sym.size)
                r = fail(msg, msglen, -EFAULT, "the %" PRIu64 " bytes of function %s are not in the file's image", sym.size,
                         name);
        else
                r = entry_check(st, name, &sym, code, got - sym.size, sym.value, &rel, msg, msglen);
        free(code);
        return r;
}

void check_redirect(const char *name, const char *file, unsigned pos) {
        static SymTab *st;
        static Elf *e;
        static int fd = -1;
        char msg[512];
        int r;

        if (!st) {
                r = symtab_open(binary_path, &st);
                if (r < 0)
                        die("cannot read the symbols of %s: %s", binary_path, strerror(-r));
                fd = open(binary_path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || !(e = elf_begin(fd, ELF_C_READ, NULL)))
                        die("cannot open %s", binary_path);
        }
        if (redirect_check(st, e, fd, name, pos, msg, sizeof(msg)) < 0)
                refuse("the fix changes %s() of %s, and ulpctl would refuse it: %s", name, file, msg);
}
