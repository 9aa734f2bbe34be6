/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Fuzz target: bytes as a patch file, through everything apply does to a patch before
 * it touches a target: the sealed copy and validation with the metadata reader
 * (patchmeta_read), the loader's relocation pre-check (loader_link without a mapping,
 * against a process with no objects), and the symbol table read for the new functions.
 * Any input must be refused with a reason or accepted, without a crash, a leak, or an
 * allocation out of proportion to its size.
 */

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/patchmeta.h"
#include "elf/symtab.h"
#include "patcher/loader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run(int fd) {
        PatchMeta *meta = NULL;
        ModuleList mods = {};
        SymResolver res = { .mods = &mods };
        SymTab *st = NULL;
        char err[256] = "";
        int r;

        r = patchmeta_read(fd, "fuzz.so", &meta, err, sizeof(err));
        if (r < 0) {
                /* Every refusal says why, on one line. */
                if (!err[0] || strchr(err, '\n'))
                        __builtin_trap();
                return;
        }
        if (!meta->name[0] || strlen(meta->name) > ULP_NAME_MAX)
                __builtin_trap();
        (void)loader_link(NULL, fd, meta, &res, NULL, err, sizeof(err));
        if (symtab_open_fd(fd, &st) >= 0) {
                for (size_t i = 0; i < meta->n_funcs; i++) {
                        Symbol s;
                        (void)symtab_lookup_addr(st, meta->funcs[i].new_vaddr, &s);
                }
                symtab_free(st);
        }
        patchmeta_free(meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_close_ int fd = memfd_create("fuzz-patch", MFD_CLOEXEC);

        if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t)size))
                return 0;
        run(fd);
        return 0;
}
