/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Fuzz target: the search for a stripped object's debug file (debugfile_find()): its
 * build-id note and .gnu_debuglink section (name and CRC) read from a hostile object, and
 * each candidate judged (an ELF file with .symtab, the same build-id or the CRC). Input:
 * a 4-byte little-endian length L, then L bytes of the object, then the bytes of the
 * candidate, which is put where the search looks: ROOT/.build-id/ab/cdef.debug for the
 * object's build-id, and DIR/cand.debug for a .gnu_debuglink naming "cand.debug" (the
 * seeds do). Everything lives in a scratch directory of this process.
 * Invariants: the result is found or not found; "searched" is one line; a debug file
 * found is one of the candidates, has a .symtab and matches the object. Then the object
 * as a module's SymTab, which reads its symbols, and the debug file's, at its first
 * lookup: a function of the debug file lies inside an executable PT_LOAD segment of the
 * object; the questions asked without reading the symbols (imports, sections, a name in
 * the file's own tables) answer the same before and after they are read. Exported names
 * are asked first, which a shared library answers from its .dynsym alone.
 */

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/debugfile.h"
#include "elf/module.h"
#include "elf/symtab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], obj_path[PATH_MAX], cand_path[PATH_MAX], bid_dir[PATH_MAX], bid_path[PATH_MAX];

static void cleanup(void) {
        char p[PATH_MAX];

        if (bid_path[0])
                unlink(bid_path);
        if (bid_dir[0])
                rmdir(bid_dir);
        unlink(obj_path);
        unlink(cand_path);
        snprintf(p, sizeof(p), "%s/root/.build-id", dir);
        rmdir(p);
        snprintf(p, sizeof(p), "%s/root", dir);
        rmdir(p);
        rmdir(dir);
}

static void setup(void) {
        char p[PATH_MAX];

        snprintf(dir, sizeof(dir), "/tmp/ulp-fuzz-debuglink.XXXXXX");
        if (!mkdtemp(dir))
                abort();
        snprintf(obj_path, sizeof(obj_path), "%s/obj", dir);
        snprintf(cand_path, sizeof(cand_path), "%s/cand.debug", dir);
        snprintf(p, sizeof(p), "%s/root", dir);
        if (mkdir(p, 0700) < 0 || setenv("ULP_DEBUG_ROOT", p, 1) < 0)
                abort();
        snprintf(p, sizeof(p), "%s/root/.build-id", dir);
        if (mkdir(p, 0700) < 0)
                abort();
        atexit(cleanup);
}

static int write_file(const char *path, const uint8_t *data, size_t size) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t)size))
                return -1;
        return 0;
}

/* The candidate also at the build-id path of the object, when it has a build-id. */
static void place_by_build_id(Elf *elf, const uint8_t *cand, size_t cand_size) {
        uint8_t id[BUILD_ID_MAX];
        char hex[2 * BUILD_ID_MAX + 1];
        int n = elf_read_build_id(elf, id, sizeof(id));

        if (bid_path[0]) {
                unlink(bid_path);
                rmdir(bid_dir);
                bid_path[0] = bid_dir[0] = 0;
        }
        if (n < 2)
                return;
        build_id_to_hex(id, (size_t)n, hex);
        snprintf(bid_dir, sizeof(bid_dir), "%s/root/.build-id/%.2s", dir, hex);
        snprintf(bid_path, sizeof(bid_path), "%s/%s.debug", bid_dir, hex + 2);
        if (mkdir(bid_dir, 0700) < 0 && errno != EEXIST)
                abort();
        if (write_file(bid_path, cand, cand_size) < 0)
                abort();
}

static void check_found(int fd, const char *path) {
        Elf *elf = NULL;
        struct stat st;

        if (strcmp(path, cand_path) != 0 && strcmp(path, bid_path) != 0)
                __builtin_trap();
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || elf_open_fd(fd, &elf) < 0)
                __builtin_trap();
        if (!elf_has_section_type(elf, SHT_SYMTAB))
                __builtin_trap();
        elf_end(elf);
}

/* A function named from the debug file lies where the object has code. */
static void check_in_image(Elf *elf, const Symbol *s) {
        size_t n;

        if (!s->from_debug_file || (s->type != STT_FUNC && s->type != STT_GNU_IFUNC))
                return;
        if (elf_getphdrnum(elf, &n) < 0)
                __builtin_trap();
        for (size_t i = 0; i < n; i++) {
                GElf_Phdr ph;
                if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X) &&
                    s->value >= ph.p_vaddr && s->value - ph.p_vaddr <= ph.p_memsz &&
                    s->size <= ph.p_memsz - (s->value - ph.p_vaddr))
                        return;
        }
        __builtin_trap();
}

static void check_symtab(int fd, Elf *elf) {
        static const char *const names[] = { "main", "helper", "runtime.goexit", "memcpy", "_start", "vers", NULL };
        _cleanup_(symtab_freep) SymTab *st = NULL;
        bool before[ELEMENTSOF(names)];
        const char *imp;
        Symbol s;

        if (symtab_open_module_fd(fd, obj_path, &st) < 0)
                return;
        imp = symtab_find_import(st, names);
        /* a shared library's exported names from its .dynsym, before its symbols are read */
        for (size_t i = 0; names[i]; i++)
                (void)symtab_lookup_exported(st, names[i], &s);
        for (size_t i = 0; names[i]; i++)
                before[i] = symtab_file_defines(st, names[i]);
        for (size_t i = 0; names[i]; i++)
                if (symtab_lookup(st, names[i], 0, &s) == 0)
                        check_in_image(elf, &s);
        if (symtab_lookup_addr(st, 0x1000, &s) == 0)
                check_in_image(elf, &s);
        if (symtab_find_import(st, names) != imp)
                __builtin_trap();
        for (size_t i = 0; names[i]; i++)
                if (symtab_file_defines(st, names[i]) != before[i])
                        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *found = NULL, *searched = NULL;
        Elf *elf = NULL;
        uint32_t len;
        int dfd = -1, r;

        if (!dir[0])
                setup();
        if (size < 4)
                return 0;
        memcpy(&len, data, 4);
        len = (uint32_t)MIN((size_t)len, size - 4);
        if (write_file(obj_path, data + 4, len) < 0 || write_file(cand_path, data + 4 + len, size - 4 - len) < 0)
                abort();
        fd = open(obj_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || elf_open_fd(fd, &elf) < 0)
                return 0;
        place_by_build_id(elf, data + 4 + len, size - 4 - len);
        r = debugfile_find(elf, obj_path, &dfd, &found, &searched);
        if (r != 0 && r != -ENOENT && r != -ENOMEM)
                __builtin_trap();
        if (r != -ENOMEM && (!searched || strchr(searched, '\n')))
                __builtin_trap();
        if (r == 0) {
                check_found(dfd, found);
                close(dfd);
        }
        check_symtab(fd, elf);
        elf_end(elf);
        return 0;
}
