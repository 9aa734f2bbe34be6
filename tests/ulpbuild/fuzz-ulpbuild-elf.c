/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Fuzz target: bytes as the files ulp-build-diff reads (ulpbuild/): the operator's
 * binary and the two objects of one translation unit, read and compared as ulp-build
 * does. The input is
 *
 *     u32 binary size, u32 first object size (little-endian), the binary, the clean
 *     build's object, the fixed build's object (the rest)
 *
 * The binary goes through bin_load() and, for each of its functions (the first 64),
 * the entry check (redirect_check(), the patcher's entry_check() on the file's bytes);
 * the objects through obj_load(), then what the comparison does with them: every
 * function and variable of the fixed one against the clean one (sec_same(), which
 * follows every relocation), every relocation's target, and each clean function against
 * the binary's (bin_lookup(), bin_differs()). Any input is refused with an error or
 * read; nothing crashes, exits or leaks.
 */

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ulpbuild/ulp-build-diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An Elf over a private copy of n bytes at p (libelf keeps pointing into it). */
static Elf *elf_of(const uint8_t *p, size_t n, char **copy) {
        *copy = malloc(n ? n : 1);
        if (!*copy)
                return NULL;
        memcpy(*copy, p, n);
        return elf_memory(*copy, n);
}

/* *copy: the bytes the loaded binary's Elf reads, freed by the caller after bin_close(). */
static void fuzz_binary(const uint8_t *p, size_t n, char **copy) {
        char err[512], msg[512];
        SymTab *st = NULL;
        int fd;

        if (bin_load(elf_of(p, n, copy), "binary", err, sizeof(err)) < 0) {
                bin_close();
                return;
        }
        fd = memfd_create("binary", MFD_CLOEXEC);
        if (fd >= 0 && write(fd, p, n) == (ssize_t)n && symtab_open_fd(fd, &st) >= 0) {
                Elf *e = elf_begin(fd, ELF_C_READ, NULL);
                for (size_t i = 0, done = 0; e && i < n_bsyms && done < 64; i++) {
                        unsigned pos;
                        if (!bsyms[i].func || bin_lookup(bsyms[i].name, bsyms[i].file, bsyms[i].local, &pos) != &bsyms[i])
                                continue;
                        (void)redirect_check(st, e, fd, bsyms[i].name, pos, msg, sizeof(msg));
                        done++;
                }
                if (e)
                        elf_end(e);
                symtab_free(st);
        }
        if (fd >= 0)
                close(fd);
}

static void compare(const Obj *o, const Obj *p, bool have_binary) {
        for (size_t i = 1; i < p->shnum; i++) {
                if (!p->primary[i])
                        continue;
                bool code = sec_is_code(p, i);
                size_t j = obj_find(o, p->symname[p->primary[i]], code);
                if (j)
                        (void)sec_same(o, j, p, i);
                for (size_t k = 0, nr = obj_nrela(p, i); k < nr; k++) {
                        GElf_Rela r = obj_rela(p, i, k);
                        Target t = rel_target(p, &r);
                        (void)rel_width(GELF_R_TYPE(r.r_info));
                        if (t.sec >= p->shnum || t.named >= p->nsym)
                                __builtin_trap();
                }
        }
        for (size_t i = 1; have_binary && i < o->shnum; i++) {
                unsigned pos;
                if (!sec_is_code(o, i) || !o->primary[i])
                        continue;
                const BinSym *bs = bin_lookup(o->symname[o->primary[i]], o->file,
                                              GELF_ST_BIND(o->sym[o->primary[i]].st_info) == STB_LOCAL, &pos);
                if (bs && bs->func && bs->size == o->sh[i].sh_size)
                        (void)bin_differs(o, i, bs);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint32_t nb, no;
        char err[512], *cb = NULL, *c1 = NULL, *c2 = NULL;
        Obj o = { .file = "" }, p = { .file = "" };

        if (size < 8)
                return 0;
        memcpy(&nb, data, 4);
        memcpy(&no, data + 4, 4);
        data += 8;
        size -= 8;
        if (nb > size || no > size - nb)
                return 0;
        elf_version(EV_CURRENT);
        binary_path = "binary";
        fuzz_binary(data, nb, &cb);
        bool have_binary = n_bsyms > 0;
        if (obj_load(&o, "orig.o", elf_of(data + nb, no, &c1), err, sizeof(err)) >= 0 &&
            obj_load(&p, "patched.o", elf_of(data + nb + no, size - nb - no, &c2), err, sizeof(err)) >= 0)
                compare(&o, &p, have_binary);
        obj_close(&o);
        obj_close(&p);
        bin_close();
        free(cb);
        free(c1);
        free(c2);
        return 0;
}
