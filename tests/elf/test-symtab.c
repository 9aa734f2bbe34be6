/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Symbol tables of the fixture programs: duplicate locals, sizes, addresses, clones,
 * build-ids. */

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/demangle.h"
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

/* Every defined name of libc (3,000, many sharing long prefixes such as "__libc_" and
 * "pthread_", some of exactly 8 bytes) is found again. */
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

/* The reference: the symbols of a file as the sorted table had them before the hash
 * index (every entry read, sorted by name then table order, .dynsym repeats of .symtab
 * entries dropped), written here from the documented rules, independently of symtab.c. */
typedef struct RefEntry {
        Symbol sym;
        size_t seq;
        bool from_dynsym, in_dynsym, hidden;
} RefEntry;

typedef struct RefTab {
        RefEntry *v;
        size_t n, alloc;
} RefTab;

static bool ref_in_image(Elf *main, const GElf_Sym *s) {
        bool func = GELF_ST_TYPE(s->st_info) == STT_FUNC || GELF_ST_TYPE(s->st_info) == STT_GNU_IFUNC;
        size_t nph = 0;

        if (s->st_shndx == SHN_ABS || elf_getphdrnum(main, &nph) < 0)
                return false;
        for (size_t i = 0; i < nph; i++) {
                GElf_Phdr ph;
                if (!gelf_getphdr(main, (int)i, &ph) || ph.p_type != PT_LOAD || (func && !(ph.p_flags & PF_X)))
                        continue;
                if (s->st_value >= ph.p_vaddr && s->st_value - ph.p_vaddr <= ph.p_memsz &&
                    s->st_size <= ph.p_memsz - (s->st_value - ph.p_vaddr))
                        return true;
        }
        return false;
}

static void ref_add(RefTab *t, Elf *e, Elf *main, Elf32_Word type) {
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn)); ) {
                Elf_Data *d, *ver = NULL, *x = NULL;
                GElf_Shdr sh;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != type || !sh.sh_entsize || !(d = elf_getdata(scn, NULL)))
                        continue;
                for (Elf_Scn *c = NULL; (c = elf_nextscn(e, c)); ) {
                        GElf_Shdr cs;
                        if (gelf_getshdr(c, &cs) && cs.sh_link == elf_ndxscn(scn) && cs.sh_type == SHT_GNU_versym &&
                            type == SHT_DYNSYM)
                                ver = elf_getdata(c, NULL);
                        if (gelf_getshdr(c, &cs) && cs.sh_link == elf_ndxscn(scn) && cs.sh_type == SHT_SYMTAB_SHNDX)
                                x = elf_getdata(c, NULL);
                }
                for (size_t i = 1; i < sh.sh_size / sh.sh_entsize; i++) {
                        GElf_Sym s;
                        GElf_Versym v = 0;
                        Elf32_Word xs = 0;
                        const char *name;
                        if (!gelf_getsymshndx(d, x, (int)i, &s, &xs) ||
                            !(name = elf_strptr(e, sh.sh_link, s.st_name)) || !*name ||
                            s.st_shndx == SHN_UNDEF || (s.st_shndx == SHN_XINDEX && xs == SHN_UNDEF) ||
                            GELF_ST_TYPE(s.st_info) == STT_SECTION || GELF_ST_TYPE(s.st_info) == STT_FILE)
                                continue;
                        if (e != main && !ref_in_image(main, &s))
                                continue;
                        if (ver)
                                (void)gelf_getversym(ver, (int)i, &v);
                        if (t->n == t->alloc) {
                                t->alloc = t->alloc ? 2 * t->alloc : 1024;
                                t->v = realloc(t->v, t->alloc * sizeof(RefEntry));
                                ASSERT_TRUE(t->v);
                        }
                        t->v[t->n] = (RefEntry) {
                                .sym = { name, s.st_value, s.st_size, GELF_ST_TYPE(s.st_info), GELF_ST_BIND(s.st_info),
                                         GELF_ST_VISIBILITY(s.st_other),
                                         s.st_shndx == SHN_XINDEX ? (uint16_t)xs : s.st_shndx, e != main },
                                .seq = t->n, .from_dynsym = type == SHT_DYNSYM, .in_dynsym = type == SHT_DYNSYM,
                                .hidden = (v & 0x8000) != 0,
                        };
                        t->n++;
                }
        }
}

static int ref_cmp(const void *a, const void *b) {
        const RefEntry *x = a, *y = b;
        int c = strcmp(x->sym.name, y->sym.name);
        return c ? c : x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void ref_build(RefTab *t, Elf *main, Elf *debug) {
        size_t out = 0;

        ref_add(t, debug ?: main, main, SHT_SYMTAB);
        ref_add(t, main, main, SHT_DYNSYM);
        qsort(t->v, t->n, sizeof(RefEntry), ref_cmp);
        /* A .dynsym entry with the name, value and binding of a .symtab entry is that
         * entry, the last such, exported. */
        for (size_t i = 0; i < t->n; i++) {
                RefEntry *e = &t->v[i], *twin = NULL;
                for (size_t j = 0; e->from_dynsym && j < out && !twin; j++) {
                        RefEntry *q = &t->v[out - 1 - j];
                        if (strcmp(q->sym.name, e->sym.name) != 0)
                                break;
                        if (!q->from_dynsym && q->sym.value == e->sym.value && q->sym.bind == e->sym.bind)
                                twin = q;
                }
                if (twin) {
                        twin->in_dynsym = true;
                        twin->hidden = e->hidden;
                } else
                        t->v[out++] = *e;
        }
        t->n = out;
}

static int ref_rank(unsigned char bind) {
        return bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2;
}

static bool ref_better(const RefEntry *a, const RefEntry *b) {
        if (ref_rank(a->sym.bind) != ref_rank(b->sym.bind))
                return ref_rank(a->sym.bind) < ref_rank(b->sym.bind);
        return !a->hidden && b->hidden;
}

/* The entries named name: [*first, *end). */
static void ref_run(const RefTab *t, const char *name, size_t *first, size_t *end) {
        size_t lo = 0, hi = t->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(t->v[mid].sym.name, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        for (*first = *end = lo; *end < t->n && strcmp(t->v[*end].sym.name, name) == 0; (*end)++)
                ;
}

/* symtab_lookup() of a plain name: the best global or weak one, else the only local;
 * pos >= 1 the pos-th local. */
static int ref_lookup(const RefTab *t, const char *name, unsigned pos, Symbol *ret) {
        const RefEntry *best = NULL, *local = NULL;
        unsigned n_local = 0;
        size_t i, end;

        for (ref_run(t, name, &i, &end); i < end; i++) {
                const RefEntry *e = &t->v[i];
                if (e->sym.bind == STB_LOCAL) {
                        if (++n_local == pos || (pos == 0 && !local))
                                local = e;
                } else if (pos == 0 && (!best || ref_better(e, best)))
                        best = e;
        }
        if (pos > 0 && n_local < pos)
                return -ENOENT;
        if (pos > 0 || !best) {
                if (pos == 0 && n_local > 1)
                        return -ENOTUNIQ;
                best = local;
        }
        if (!best)
                return -ENOENT;
        *ret = best->sym;
        return 0;
}

/* symtab_lookup_exported(): what .dynsym exports first, global before weak, the default
 * version first; else a .symtab global or weak of default or protected visibility. */
static int ref_lookup_exported(const RefTab *t, const char *name, Symbol *ret) {
        const RefEntry *best = NULL;
        size_t i, end;

        for (ref_run(t, name, &i, &end); i < end; i++) {
                const RefEntry *e = &t->v[i];
                if ((e->sym.bind != STB_GLOBAL && e->sym.bind != STB_WEAK) ||
                    (e->sym.visibility != STV_DEFAULT && e->sym.visibility != STV_PROTECTED))
                        continue;
                if (!best || (e->in_dynsym && !best->in_dynsym) ||
                    (e->in_dynsym == best->in_dynsym && ref_better(e, best)))
                        best = e;
        }
        if (!best)
                return -ENOENT;
        *ret = best->sym;
        return 0;
}

/* Two tables of one file, indexed by hash and by sorting, give the reference's answers. */
typedef struct Pair {
        SymTab *hash, *sorted;
        SymTab *unread;          /* asked symtab_file_defines() only: its symbols never read */
        int fd;                  /* the file, for a SymTab opened afresh for each name */
        const char *path;
        RefTab ref;
        size_t names, clones, addrs;
} Pair;

static void assert_same_symbol(const char *what, const char *name, int ra, const Symbol *a, int rb,
                               const Symbol *b) {
        if (ra != rb)
                TEST__FAIL("%s(%s): %d by hash, %d sorted", what, name, ra, rb);
        if (ra < 0)
                return;
        if (strcmp(a->name, b->name) != 0 || a->value != b->value || a->size != b->size || a->type != b->type ||
            a->bind != b->bind || a->visibility != b->visibility || a->shndx != b->shndx ||
            a->from_debug_file != b->from_debug_file)
                TEST__FAIL("%s(%s): %s@0x%" PRIx64 " (bind %u) by hash, %s@0x%" PRIx64 " (bind %u) sorted",
                           what, name, a->name, a->value, a->bind, b->name, b->value, b->bind);
}

static void append_clone(const Symbol *sym, void *userdata) {
        char *buf = userdata;
        size_t len = strlen(buf);
        snprintf(buf + len, 4096 - len, "%s@%" PRIx64 " ", sym->name, sym->value);
}

static void compare_name(Pair *p, const char *name) {
        char ca[4096] = "", cb[4096] = "";
        Symbol a, b;
        int ra, rb;

        for (unsigned pos = 0; pos < 64; pos++) {
                ra = symtab_lookup(p->hash, name, pos, &a);
                rb = symtab_lookup(p->sorted, name, pos, &b);
                assert_same_symbol("lookup", name, ra, &a, rb, &b);
                if (!demangle_looks_demangled(name)) {
                        rb = ref_lookup(&p->ref, name, pos, &b);
                        assert_same_symbol("lookup (reference)", name, ra, &a, rb, &b);
                }
                if (pos > 0 && ra == -ENOENT)
                        break;
        }
        ra = symtab_lookup_exported(p->hash, name, &a);
        rb = symtab_lookup_exported(p->sorted, name, &b);
        assert_same_symbol("lookup_exported", name, ra, &a, rb, &b);
        /* From .dynsym alone (a library whose symbols are not read): the same symbol but
         * for where it was read (from_debug_file, size, section). A SymTab of its own for
         * each name: a tie (two versions, neither the default) reads the symbols. */
        _cleanup_(symtab_freep) SymTab *scan = NULL;
        ASSERT_OK(symtab_open_module_fd(p->fd, p->path, &scan));
        rb = symtab_lookup_exported(scan, name, &b);
        if (ra != rb || (ra == 0 && (strcmp(a.name, b.name) != 0 || a.value != b.value || a.type != b.type ||
                                     a.bind != b.bind || a.visibility != b.visibility)))
                TEST__FAIL("lookup_exported(%s): %d %s@0x%" PRIx64 " (type %u bind %u) by the index, "
                           "%d %s@0x%" PRIx64 " (type %u bind %u) from .dynsym", name, ra, ra ? "" : a.name,
                           ra ? 0 : a.value, a.type, a.bind, rb, rb ? "" : b.name, rb ? 0 : b.value, b.type, b.bind);
        rb = ref_lookup_exported(&p->ref, name, &b);
        assert_same_symbol("lookup_exported (reference)", name, ra, &a, rb, &b);
        /* Defined by the file itself: a reference entry not from the debug file, or one
         * .dynsym repeats. The walk of the raw tables, and the index, must say the same. */
        bool own = false;
        size_t first, end;
        ref_run(&p->ref, name, &first, &end);
        for (size_t i = first; i < end; i++)
                own = own || !p->ref.v[i].sym.from_debug_file || p->ref.v[i].in_dynsym;
        if (symtab_file_defines(p->unread, name) != own || symtab_file_defines(p->hash, name) != own)
                TEST__FAIL("file_defines(%s): %d unread, %d indexed, %d in the reference", name,
                           symtab_file_defines(p->unread, name), symtab_file_defines(p->hash, name), own);
        ra = symtab_foreach_clone(p->hash, name, append_clone, ca);
        rb = symtab_foreach_clone(p->sorted, name, append_clone, cb);
        if (ra != rb || strcmp(ca, cb) != 0)
                TEST__FAIL("clones of %s: %d \"%s\" by hash, %d \"%s\" sorted", name, ra, ca, rb, cb);
        p->clones += ra > 0 ? (size_t)ra : 0;
        p->names++;
}

/* symtab_first_start() walks the whole table: only every 16th address. */
static void compare_addr(Pair *p, uint64_t value, uint64_t size) {
        const uint64_t at[] = { value, value + size / 2, value + size, value - 1 };
        Symbol a, b;

        for (size_t i = 0; i < ELEMENTSOF(at); i++) {
                int ra = symtab_lookup_addr(p->hash, at[i], &a), rb = symtab_lookup_addr(p->sorted, at[i], &b);
                assert_same_symbol("lookup_addr", "", ra, &a, rb, &b);
                if (p->addrs % 16)
                        continue;
                ra = symtab_first_start(p->hash, at[i], at[i] + 64, &a);
                rb = symtab_first_start(p->sorted, at[i], at[i] + 64, &b);
                assert_same_symbol("first_start", "", ra, &a, rb, &b);
        }
        p->addrs++;
}

/* Every name and address of the symbol tables of elf. */
static void compare_elf(Pair *p, Elf *e) {
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn)); ) {
                GElf_Shdr sh;
                Elf_Data *d;
                if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB) ||
                    !sh.sh_entsize || !(d = elf_getdata(scn, NULL)))
                        continue;
                for (size_t i = 1; i < sh.sh_size / sh.sh_entsize; i++) {
                        GElf_Sym sym;
                        const char *name;
                        if (!gelf_getsym(d, (int)i, &sym) || !(name = elf_strptr(e, sh.sh_link, sym.st_name)))
                                continue;
                        compare_name(p, name);
                        compare_addr(p, sym.st_value, sym.st_size);
                        /* The name a clone ("f.isra.0") is of. */
                        const char *dot = strchr(name, '.');
                        if (dot && dot > name) {
                                char base[256];
                                snprintf(base, sizeof(base), "%.*s", (int)MIN(dot - name, 255), name);
                                compare_name(p, base);
                        }
                }
        }
}

static void compare_file(const char *path, size_t min_names) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        Pair p = {};

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(symtab_open_module_fd_index(fd, path, SYMTAB_INDEX_HASH, &p.hash));
        ASSERT_OK(symtab_open_module_fd_index(fd, path, SYMTAB_INDEX_SORTED, &p.sorted));
        ASSERT_OK(symtab_open_module_fd(fd, path, &p.unread));
        p.fd = fd;
        p.path = path;
        /* The bound on probes is for names made to collide, never met by a real file. */
        ASSERT_EQ(symtab_index(p.hash), SYMTAB_INDEX_HASH);
        ASSERT_EQ(symtab_index(p.sorted), SYMTAB_INDEX_SORTED);
        _cleanup_close_ int dfd = -1;
        _cleanup_(elf_endp) Elf *de = NULL;
        if (symtab_debug_path(p.hash)) {
                dfd = open(symtab_debug_path(p.hash), O_RDONLY | O_CLOEXEC);
                ASSERT_TRUE(dfd >= 0);
                ASSERT_OK(elf_open_fd(dfd, &de));
        }
        ref_build(&p.ref, symtab_elf(p.hash), de);
        compare_elf(&p, symtab_elf(p.hash));
        if (de)
                compare_elf(&p, de);
        /* Names that are no symbol, and prefixes of some. */
        static const char *const absent[] = { "pthread_", "mallocx", "", "_Z", "helper.", "memcpy@@GLIBC_2.14" };
        for (size_t i = 0; i < ELEMENTSOF(absent); i++)
                compare_name(&p, absent[i]);
        fprintf(stderr, "  %s (debug file %s): %zu names, %zu clones, %zu addresses alike\n", path,
                symtab_debug_path(p.hash) ?: "none", p.names, p.clones, p.addrs);
        symtab_free(p.hash);
        symtab_free(p.sorted);
        symtab_free(p.unread);

        free(p.ref.v);
        ASSERT_TRUE(p.names >= min_names);
}

TEST(hash_index_as_sorted_fixtures) {
        compare_file(FIXTURE_PIE, 20);
        compare_file(FIXTURE_NOPIE, 20);
        compare_file(FIXTURE_VERSIONED, 5);
}

/* A name exported in two versions resolves to the default one, as the dynamic linker
 * binds it, though a local of that name sits at the default's address (libc's "memcpy"):
 * before, that local stood for the default's .dynsym entry, and memcpy resolved to
 * memcpy@GLIBC_2.2.5. The same from .dynsym alone, before the symbols are read. */
TEST(default_version_over_local_alias) {
        _cleanup_(symtab_freep) SymTab *st = NULL, *fresh = NULL;
        Symbol v1, v2, s;

        ASSERT_OK(symtab_open(FIXTURE_VERSIONED, &st));
        ASSERT_OK(symtab_open(FIXTURE_VERSIONED, &fresh));
        ASSERT_OK(symtab_lookup_exported(fresh, "vers", &s));
        ASSERT_OK(symtab_lookup(st, "vers_v1", 0, &v1));
        ASSERT_OK(symtab_lookup(st, "vers_v2", 0, &v2));
        ASSERT_TRUE(v1.value != v2.value);
        ASSERT_EQ(s.value, v2.value);
        ASSERT_OK(symtab_lookup_exported(st, "vers", &s));
        ASSERT_EQ(s.value, v2.value);
        ASSERT_EQ(s.bind, STB_GLOBAL);
        ASSERT_OK(symtab_lookup(st, "vers", 0, &s));
        ASSERT_EQ(s.value, v2.value);
        ASSERT_EQ(s.bind, STB_GLOBAL);
        /* the local is still the first local of that name */
        ASSERT_OK(symtab_lookup(st, "vers", 1, &s));
        ASSERT_EQ(s.bind, STB_LOCAL);
        ASSERT_EQ(s.value, v2.value);
}

/* Opening reads no symbol: what the check for stackful threads asks every module
 * (imports, sections, one name in the file's own tables) reads none either; the first
 * lookup reads them, and only then looks for a stripped file's debug file. Shown with a
 * stripped copy of the fixture whose debug file is found only once ULP_DEBUG_ROOT names
 * its directory: set after those questions, before the lookup. */
TEST(symbols_read_by_first_lookup) {
        char root[] = "/tmp/ulp-symtab-XXXXXX", cmd[4096], exe[512], none[512], dir[512], dbg[600], hex[64];
        _cleanup_(symtab_freep) SymTab *st = NULL;
        const char *const imports[] = { "printf", "puts", "__libc_start_main", NULL };
        uint8_t id[64];
        Symbol sym;
        int n;

        ASSERT_TRUE(mkdtemp(root));
        snprintf(exe, sizeof(exe), "%s/fixture", root);
        snprintf(none, sizeof(none), "%s/none", root);
        snprintf(cmd, sizeof(cmd), "objcopy --strip-all %s %s && objcopy --only-keep-debug %s %s/debug",
                 FIXTURE_PIE, exe, FIXTURE_PIE, root);
        ASSERT_EQ(system(cmd), 0);
        {
                _cleanup_close_ int fd = open(exe, O_RDONLY | O_CLOEXEC);
                _cleanup_(elf_endp) Elf *e = NULL;
                ASSERT_TRUE(fd >= 0);
                ASSERT_OK(elf_open_fd(fd, &e));
                n = elf_read_build_id(e, id, sizeof(id));
                ASSERT_TRUE(n > 1);
        }
        for (int i = 0; i < n; i++)
                snprintf(hex + 2 * i, sizeof(hex) - 2 * (size_t)i, "%02x", id[i]);
        snprintf(dir, sizeof(dir), "%s/.build-id/%.2s", root, hex);
        snprintf(cmd, sizeof(cmd), "mkdir -p %s && mv %s/debug %s/%s.debug", dir, root, dir, hex + 2);
        ASSERT_EQ(system(cmd), 0);
        snprintf(dbg, sizeof(dbg), "%s/%s.debug", dir, hex + 2);

        ASSERT_OK(setenv("ULP_DEBUG_ROOT", none, 1));
        ASSERT_OK(symtab_open_module(exe, exe, &st));
        ASSERT_TRUE(symtab_find_import(st, imports) != NULL);
        ASSERT_TRUE(!symtab_has_section(st, ".go.buildinfo"));
        ASSERT_TRUE(!symtab_file_defines(st, "fixture_compute"));     /* in the debug file only */
        ASSERT_TRUE(!symtab_file_defines(st, "runtime.goexit"));
        ASSERT_OK(setenv("ULP_DEBUG_ROOT", root, 1));
        ASSERT_OK(symtab_lookup(st, "fixture_compute", 0, &sym));
        ASSERT_TRUE(sym.from_debug_file);
        ASSERT_STREQ(symtab_debug_path(st), dbg);
        /* read once: the debug file stays the one found */
        ASSERT_TRUE(!symtab_file_defines(st, "fixture_compute"));
        ASSERT_OK(setenv("ULP_DEBUG_ROOT", none, 1));
        ASSERT_OK(symtab_lookup(st, "helper", 1, &sym));
        symtab_free(TAKE_PTR(st));

        /* The first lookup without the debug file: the file's .dynsym only, and said so. */
        ASSERT_OK(symtab_open_module(exe, exe, &st));
        ASSERT_ERR(symtab_lookup(st, "fixture_compute", 0, &sym), -ENOENT);
        ASSERT_TRUE(symtab_debug_path(st) == NULL);
        ASSERT_TRUE(symtab_searched(st) && strstr(symtab_searched(st), none));
        ASSERT_OK(unsetenv("ULP_DEBUG_ROOT"));
        snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
        ASSERT_EQ(system(cmd), 0);
}

/* libc with its debug file when installed: locals of the same name, versions (memcpy@
 * and memcpy@@), IFUNCs, .dynsym entries that repeat .symtab ones, clones. */
TEST(hash_index_as_sorted_libc) {
        char path[512];

        ASSERT_TRUE(libc_path(path, sizeof(path)));
        compare_file(path, 1000);
}

TEST_MAIN();
