/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Symbol tables of the fixture programs: duplicate locals, sizes, addresses, clones,
 * build-ids. */

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdio.h>
#include <string.h>

#include "common/macro.h"
#include "elf/module.h"
#include "elf/symtab.h"
#include "test.h"

TEST(duplicate_locals) {
        _cleanup_(symtab_freep) SymTab *st = NULL;
        Symbol a, b;

        ASSERT_OK(symtab_open(FIXTURE_PIE, &st));
        ASSERT_ERR(symtab_lookup(st, "helper", 0, &a), -ENOTUNIQ);
        ASSERT_OK(symtab_lookup(st, "helper", 1, &a));
        ASSERT_OK(symtab_lookup(st, "helper", 2, &b));
        ASSERT_ERR(symtab_lookup(st, "helper", 3, NULL), -ENOENT);
        ASSERT_TRUE(a.value != b.value);
        ASSERT_STREQ(a.name, "helper");
        ASSERT_EQ(a.bind, STB_LOCAL);
        ASSERT_EQ(b.bind, STB_LOCAL);
        ASSERT_EQ(a.type, STT_FUNC);
        ASSERT_TRUE(a.size > 0 && b.size > 0);
        /* fixture-main.c is linked first: its helper comes first in .symtab. Both TUs
         * have an exported accessor returning their helper; the address order of the
         * text follows the link order as well. */
        ASSERT_TRUE(a.value < b.value);
}

TEST(globals_and_statics) {
        _cleanup_(symtab_freep) SymTab *st = NULL;
        Symbol s;

        ASSERT_OK(symtab_open(FIXTURE_PIE, &st));
        ASSERT_OK(symtab_lookup(st, "fixture_global", 0, &s));
        ASSERT_EQ(s.type, STT_OBJECT);
        ASSERT_EQ(s.bind, STB_GLOBAL);
        ASSERT_EQ(s.size, sizeof(int));
        ASSERT_ERR(symtab_lookup(st, "fixture_global", 1, &s), -ENOENT);

        ASSERT_OK(symtab_lookup(st, "fixture_counter", 0, &s));
        ASSERT_EQ(s.bind, STB_LOCAL);
        ASSERT_EQ(s.size, sizeof(long));
        ASSERT_OK(symtab_lookup(st, "fixture_counter", 1, NULL));

        ASSERT_OK(symtab_lookup(st, "fixture_sized", 0, &s));
        ASSERT_EQ(s.size, 3);
        ASSERT_EQ(s.type, STT_FUNC);

        ASSERT_ERR(symtab_lookup(st, "no_such_symbol", 0, &s), -ENOENT);
        /* Undefined symbols are not indexed: printf is only imported. */
        ASSERT_ERR(symtab_lookup(st, "printf", 0, &s), -ENOENT);
}

TEST(lookup_addr) {
        _cleanup_(symtab_freep) SymTab *st = NULL;
        Symbol f, s;

        ASSERT_OK(symtab_open(FIXTURE_PIE, &st));
        ASSERT_OK(symtab_lookup(st, "fixture_sized", 0, &f));
        for (uint64_t off = 0; off < 3; off++) {
                ASSERT_OK(symtab_lookup_addr(st, f.value + off, &s));
                ASSERT_STREQ(s.name, "fixture_sized");
        }
        if (symtab_lookup_addr(st, f.value + 3, &s) == 0)
                ASSERT_TRUE(strcmp(s.name, "fixture_sized") != 0);

        ASSERT_OK(symtab_lookup(st, "helper", 2, &f));
        ASSERT_OK(symtab_lookup_addr(st, f.value + f.size - 1, &s));
        ASSERT_STREQ(s.name, "helper");
        ASSERT_EQ_U64(s.value, f.value);

        ASSERT_OK(symtab_lookup(st, "main", 0, &f));
        ASSERT_OK(symtab_lookup_addr(st, f.value, &s));
        ASSERT_STREQ(s.name, "main");
        ASSERT_ERR(symtab_lookup_addr(st, 0, &s), -ENOENT);
        ASSERT_ERR(symtab_lookup_addr(st, UINT64_MAX - 1, &s), -ENOENT);
}

TEST(exported) {
        _cleanup_(symtab_freep) SymTab *st = NULL;
        Symbol s;

        ASSERT_OK(symtab_open(FIXTURE_PIE, &st));
        ASSERT_OK(symtab_lookup_exported(st, "fixture_compute", &s));
        ASSERT_EQ(s.bind, STB_GLOBAL);
        ASSERT_ERR(symtab_lookup_exported(st, "fixture_counter", &s), -ENOENT);
        ASSERT_ERR(symtab_lookup_exported(st, "helper", &s), -ENOENT);
}

static void collect(const Symbol *sym, void *userdata) {
        char *buf = userdata;
        strcat(buf, sym->name);
        strcat(buf, " ");
}

TEST(clones_in_fixture) {
        _cleanup_(symtab_freep) SymTab *st = NULL;
        char names[256] = "";

        ASSERT_OK(symtab_open(FIXTURE_PIE, &st));
        ASSERT_EQ(symtab_foreach_clone(st, "scale", collect, names), 1);
        ASSERT_STREQ(names, "scale.constprop.0 ");
        names[0] = 0;
        ASSERT_EQ(symtab_foreach_clone(st, "pair_sum", collect, names), 1);
        ASSERT_STREQ(names, "pair_sum.isra.0 ");
        ASSERT_EQ(symtab_foreach_clone(st, "fixture_compute", NULL, NULL), 0);
        ASSERT_EQ(symtab_foreach_clone(st, "pair", NULL, NULL), 0);
}

TEST(clone_suffixes) {
        static const char *const yes[] = {
                ".constprop.0", ".isra.12", ".part.3", ".cold", ".cold.1", ".lto_priv.0",
                ".constprop.0.isra.0", ".isra.0.cold", ".part.0.constprop.1.cold", ".clone.2",
                ".specialized.1",
        };
        static const char *const no[] = {
                "", ".", ".localalias", ".constpropx", "constprop.0", ".isra.", ".cold.",
                "_v2", ".part.0.", ".part.0x", ".isra.0.foo",
        };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (!symbol_is_clone_suffix(yes[i]))
                        TEST__FAIL("\"%s\" not taken for a clone suffix", yes[i]);
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (symbol_is_clone_suffix(no[i]))
                        TEST__FAIL("\"%s\" taken for a clone suffix", no[i]);
}

TEST(non_pie) {
        _cleanup_(symtab_freep) SymTab *st = NULL;
        GElf_Ehdr eh;
        Symbol a, b;

        ASSERT_OK(symtab_open(FIXTURE_NOPIE, &st));
        ASSERT_TRUE(gelf_getehdr(symtab_elf(st), &eh) != NULL);
        ASSERT_EQ(eh.e_type, ET_EXEC);
        ASSERT_OK(symtab_lookup(st, "helper", 1, &a));
        ASSERT_OK(symtab_lookup(st, "helper", 2, &b));
        ASSERT_TRUE(a.value != b.value);
        ASSERT_TRUE(a.value >= 0x400000);
        ASSERT_OK(symtab_lookup(st, "fixture_sized", 0, &a));
        ASSERT_EQ(a.size, 3);
}

TEST(build_id) {
        _cleanup_(symtab_freep) SymTab *st = NULL;
        uint8_t id[BUILD_ID_MAX];
        char hex[2 * BUILD_ID_MAX + 1];

        ASSERT_OK(symtab_open(FIXTURE_PIE, &st));
        int n = elf_read_build_id(symtab_elf(st), id, sizeof(id));
        ASSERT_EQ(n, 10);
        build_id_to_hex(id, (size_t)n, hex);
        ASSERT_STREQ(hex, FIXTURE_BUILD_ID);
        ASSERT_ERR(elf_read_build_id(symtab_elf(st), id, 4), -ENOBUFS);
}

TEST(not_elf) {
        SymTab *st = NULL;
        _cleanup_close_ int fd = open(SOURCE_DIR "/meson.build", O_RDONLY | O_CLOEXEC);

        ASSERT_TRUE(fd >= 0);
        ASSERT_ERR(symtab_open_fd(fd, &st), -ENOEXEC);
        ASSERT_ERR(symtab_open("/nonexistent/file", &st), -ENOENT);
        ASSERT_TRUE(st == NULL);
}

/* The table is sorted by a key of each name's first 8 bytes, then strcmp(): every
 * defined name of libc (3,000, many sharing long prefixes such as "__libc_" and
 * "pthread_", some of exactly 8 bytes) is found again by its binary search, and the
 * clones of a name still form one run (symtab_foreach_clone). */
static const char *libc_path(char *buf, size_t len) {
        FILE *f = fopen("/proc/self/maps", "re");
        char line[600];

        buf[0] = 0;
        while (f && fgets(line, sizeof(line), f)) {
                char *p = strchr(line, '/');
                if (p && strstr(p, "/libc.so.6")) {
                        p[strcspn(p, "\n")] = 0;
                        snprintf(buf, len, "%s", p);
                        break;
                }
        }
        if (f)
                fclose(f);
        return buf[0] ? buf : NULL;
}

TEST(every_libc_name_found) {
        _cleanup_(symtab_freep) SymTab *st = NULL;
        char path[512];
        size_t n = 0, eight = 0;
        Symbol s;

        ASSERT_TRUE(libc_path(path, sizeof(path)));
        ASSERT_OK(symtab_open(path, &st));
        Elf *e = symtab_elf(st);
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn)); ) {
                GElf_Shdr sh;
                Elf_Data *d;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || !sh.sh_entsize ||
                    !(d = elf_getdata(scn, NULL)))
                        continue;
                for (size_t i = 1; i < sh.sh_size / sh.sh_entsize; i++) {
                        GElf_Sym sym;
                        const char *name;
                        if (!gelf_getsym(d, (int)i, &sym) || sym.st_shndx == SHN_UNDEF ||
                            GELF_ST_TYPE(sym.st_info) == STT_SECTION ||
                            !(name = elf_strptr(e, sh.sh_link, sym.st_name)) || !*name)
                                continue;
                        if (symtab_lookup_exported(st, name, &s) < 0)
                                TEST__FAIL("%s not found in %s", name, path);
                        ASSERT_STREQ(s.name, name);
                        n++;
                        eight += strlen(name) == 8;
                }
        }
        fprintf(stderr, "  %zu names of %s found, %zu of exactly 8 bytes\n", n, path, eight);
        ASSERT_TRUE(n > 1000 && eight > 10);
        ASSERT_ERR(symtab_lookup_exported(st, "pthread_", &s), -ENOENT);
        ASSERT_ERR(symtab_lookup_exported(st, "mallocx", &s), -ENOENT);
}

TEST_MAIN();
