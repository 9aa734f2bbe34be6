/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Symbols of one ELF file. All defined symbols of .symtab and .dynsym go into one array,
 * in .symtab order then .dynsym order; a .dynsym entry that repeats a .symtab one (same
 * name, value and binding) is marked dropped and the .symtab one exported instead.
 *
 * The entries of one name are chained in table order (so the pos-th local is the pos-th
 * of its chain), and a hash table over the names finds a chain's first entry: built in
 * one pass, where sorting libc's 13,000 names was a fifth of what each ulpctl --direct
 * spent of its CPU (docs/performance.md). The hash is seeded at random per process; a
 * file whose names still make the probes exceed SYMTAB_PROBES_PER_ENTRY on average
 * (names chosen to collide) is indexed by sorting instead, as before, so that no file
 * costs more than O(n log n). The rarer queries get their own index when first asked:
 * by address (functions), and the names of compiler clones ("f.isra.0"), sorted
 * (symtab-index.c).
 *
 * Opening a SymTab reads the file's headers only. The symbols are read and indexed by
 * the first query that needs them (symtab__ready()), and a stripped file's debug file is
 * looked for then: most modules of a target are only asked what they import, which
 * sections they have or whether they define one name (the check for stackful threads,
 * patcher/fibers.c, on every module of every operation), and building libc's table from
 * its debug file was the largest part of an ulpctl --direct revert's own CPU
 * (docs/performance.md).
 *
 * The indexes built on demand are written through a const SymTab: a SymTab is used by
 * one thread at a time (the cache of patcher/symcache.c is per thread).
 */

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/debugfile.h"
#include "elf/demangle.h"
#include "elf/symtab.h"
#include "elf/symtab-internal.h"

/* Probes allowed to the hash index, on average per entry, before it gives way to the
 * sorted one. An honest table averages under 2 at the load factor used (at most 1/2). */
#define SYMTAB_PROBES_PER_ENTRY 8

/* Whether a symbol table entry is worth indexing: defined, named, not a section or file. */
static bool sym_wanted(const GElf_Sym *s, const char *name, Elf32_Word xshndx) {
        unsigned type = GELF_ST_TYPE(s->st_info);

        if (!name || !*name)
                return false;
        if (s->st_shndx == SHN_UNDEF || (s->st_shndx == SHN_XINDEX && xshndx == SHN_UNDEF))
                return false;
        return type != STT_SECTION && type != STT_FILE;
}

/* The PT_LOAD segments of the running file, read once for debug_sym_in_image(). */
static int read_load_segments(SymTab *st) {
        size_t nph;

        if (elf_phdr_count(st->elf, &nph) < 0 || nph == 0)
                return 0;
        st->segs = calloc(nph, sizeof(LoadSeg));
        if (!st->segs)
                return -ENOMEM;
        for (size_t i = 0; i < nph; i++) {
                GElf_Phdr ph;
                if (gelf_getphdr(st->elf, (int)i, &ph) && ph.p_type == PT_LOAD)
                        st->segs[st->n_segs++] = (LoadSeg) { ph.p_vaddr, ph.p_memsz, (ph.p_flags & PF_X) != 0 };
        }
        return 0;
}

/* A symbol of a separate debug file is trusted only where the running file has
 * something: [value, value+size) inside one of its PT_LOAD segments, an executable one
 * for a function. The build-id already ties the two files together; this bounds what a
 * damaged or foreign debug file can name. */
static bool debug_sym_in_image(const SymTab *st, const GElf_Sym *s) {
        bool func = GELF_ST_TYPE(s->st_info) == STT_FUNC || GELF_ST_TYPE(s->st_info) == STT_GNU_IFUNC;

        if (s->st_shndx == SHN_ABS)
                return false;
        for (size_t i = 0; i < st->n_segs; i++) {
                const LoadSeg *g = &st->segs[i];
                if (func && !g->exec)
                        continue;
                if (s->st_value >= g->vaddr && s->st_value - g->vaddr <= g->memsz &&
                    s->st_size <= g->memsz - (s->st_value - g->vaddr))
                        return true;
        }
        return false;
}

/* Whether .gnu.version marks symbol i as a hidden (non-default) version. */
static bool versym_hidden(Elf_Data *versym, size_t i) {
        GElf_Versym v;

        if (!versym || !gelf_getversym(versym, (int)i, &v))
                return false;
        return (v & 0x8000) != 0;
}

/* The names of a symbol table: its string table's bytes when they end with a NUL (every
 * offset inside then names a terminated string), else NULL and elf_strptr() checks each. */
static Elf_Data *string_table(Elf *elf, size_t link) {
        Elf_Scn *scn = elf_getscn(elf, link);
        GElf_Shdr sh;
        Elf_Data *d;

        if (!scn || !gelf_getshdr(scn, &sh) || sh.sh_type != SHT_STRTAB)
                return NULL;
        d = elf_getdata(scn, NULL);
        if (!d || !d->d_buf || d->d_size == 0 || ((const char *)d->d_buf)[d->d_size - 1] != 0)
                return NULL;
        return d;
}

static const char *sym_name(Elf *elf, size_t link, Elf_Data *strings, size_t off) {
        if (!strings)
                return elf_strptr(elf, link, off);
        return off < strings->d_size ? (const char *)strings->d_buf + off : NULL;
}

/* Appends the wanted symbols of one symbol table section to st->v (room made for all). */
/* The entries a symbol section holds: from its data, which libelf bounds by the file,
 * never from sh_size alone (a hostile header claims billions: an allocation of tens of
 * GiB, then a loop over them). */
static size_t section_entries(Elf_Scn *scn, const GElf_Shdr *sh) {
        Elf_Data *data = elf_getdata(scn, NULL);

        /* entries of another size are not symbols: libelf would refuse each past
         * d_size / sizeof(Elf64_Sym), after an allocation for all of them */
        if (!data || sh->sh_entsize != sizeof(Elf64_Sym))
                return 0;
        return MIN((size_t)(sh->sh_size / sh->sh_entsize), data->d_size / sh->sh_entsize);
}

/* The data of the companion section of type (extended section indexes, symbol
 * versions) of the symbol section scn, or NULL. */
static Elf_Data *companion(Elf *elf, Elf_Scn *scn, Elf32_Word type) {
        Elf_Data *d = NULL;

        for (Elf_Scn *x = NULL; (x = elf_nextscn(elf, x)); ) {
                GElf_Shdr xs;
                if (gelf_getshdr(x, &xs) && xs.sh_type == type && xs.sh_link == elf_ndxscn(scn))
                        d = elf_getdata(x, NULL);
        }
        return d;
}

static void symtab_add_section(SymTab *st, Elf *elf, Elf_Scn *scn, const GElf_Shdr *sh, bool dyn) {
        Elf_Data *data = elf_getdata(scn, NULL);
        Elf_Data *xdata, *versym, *strings;
        if (!data || sh->sh_entsize == 0)
                return;

        xdata = companion(elf, scn, SHT_SYMTAB_SHNDX);
        versym = dyn ? companion(elf, scn, SHT_GNU_versym) : NULL;
        strings = string_table(elf, sh->sh_link);

        size_t count = section_entries(scn, sh);
        for (size_t i = 1; i < count; i++) {
                GElf_Sym s;
                Elf32_Word xshndx = 0;
                if (!gelf_getsymshndx(data, xdata, (int)i, &s, &xshndx))
                        continue;
                const char *name = sym_name(elf, sh->sh_link, strings, s.st_name);
                if (!sym_wanted(&s, name, xshndx))
                        continue;
                if (elf != st->elf && !debug_sym_in_image(st, &s))
                        continue;

                st->v[st->n++] = (SymEntry) {
                        .sym = {
                                .name = name,
                                .value = s.st_value,
                                .size = s.st_size,
                                .type = GELF_ST_TYPE(s.st_info),
                                .bind = GELF_ST_BIND(s.st_info),
                                .visibility = GELF_ST_VISIBILITY(s.st_other),
                                .shndx = s.st_shndx == SHN_XINDEX ? (uint16_t)xshndx : s.st_shndx,
                                .from_debug_file = elf != st->elf,
                        },
                        .next = NO_ENTRY,
                        .from_dynsym = dyn,
                        .in_dynsym = dyn,
                        .hidden_version = versym_hidden(versym, i),
                };
        }
}

/* The symbol table sections, in order: .symtab (of the debug file when there is one),
 * then .dynsym. With add, appends their symbols to st->v; without, returns how many
 * entries they hold at most (the room to make). */
static size_t symtab_sections(SymTab *st, bool add) {
        size_t total = 0;

        for (int pass = 0; pass < 2; pass++) {
                Elf32_Word want = pass == 0 ? SHT_SYMTAB : SHT_DYNSYM;
                Elf *elf = pass == 0 && st->debug_elf ? st->debug_elf : st->elf;
                for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn)); ) {
                        GElf_Shdr sh;
                        if (!gelf_getshdr(scn, &sh) || sh.sh_type != want || sh.sh_entsize == 0)
                                continue;
                        if (add)
                                symtab_add_section(st, elf, scn, &sh, pass == 1);
                        else
                                total += section_entries(scn, &sh);
                }
        }
        return total;
}

/* Chains entry i after the entries of its name (head first, *tail last). A .dynsym entry
 * that repeats a .symtab entry of the same name, value and binding (the last such) is
 * dropped, and that entry marked exported instead: the .symtab entries of a name all come
 * before its .dynsym ones. A local of the same name and value is another symbol (libc's
 * debug file has a local "memcpy" at the address of the exported memcpy@@GLIBC_2.14):
 * taken for the twin, it hid the default version, and memcpy named memcpy@GLIBC_2.2.5. */
static void chain_append(SymTab *st, uint32_t head, uint32_t *tail, uint32_t i) {
        SymEntry *e = &st->v[i], *twin = NULL;

        for (uint32_t j = head; e->from_dynsym && j != NO_ENTRY; j = st->v[j].next)
                if (!st->v[j].from_dynsym && st->v[j].sym.value == e->sym.value &&
                    st->v[j].sym.bind == e->sym.bind)
                        twin = &st->v[j];
        if (twin) {
                twin->in_dynsym = true;
                twin->hidden_version = e->hidden_version;
                e->dropped = true;
                return;
        }
        st->v[*tail].next = i;
        *tail = i;
}

static void chains_reset(SymTab *st) {
        for (size_t i = 0; i < st->n; i++) {
                SymEntry *e = &st->v[i];
                e->next = NO_ENTRY;
                e->dropped = e->head = false;
                if (!e->from_dynsym)
                        e->in_dynsym = e->hidden_version = false;
        }
}

static uint64_t seed_value;

static void seed_init(void) {
        if (getrandom(&seed_value, sizeof(seed_value), GRND_NONBLOCK) != sizeof(seed_value))
                seed_value = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&seed_value;
}

/* One random seed per process: names chosen to collide under one seed do not under
 * another (and if they do, the probe bound catches it). */
static uint64_t process_seed(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        (void)pthread_once(&once, seed_init);
        return seed_value;
}

/* FNV-1a from a seeded state, then mixed: names differ mostly in their last bytes. */
static uint32_t name_hash(const char *name, uint64_t seed) {
        uint64_t h = seed ^ 0xcbf29ce484222325ULL;

        for (const unsigned char *p = (const unsigned char *)name; *p; p++)
                h = (h ^ *p) * 0x100000001b3ULL;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        return (uint32_t)h;
}

/* The hash index. -ELOOP when the probes exceed their bound (the caller then sorts). */
static int index_by_hash(SymTab *st) {
        uint64_t probes = 0, budget = (uint64_t)st->n * SYMTAB_PROBES_PER_ENTRY + 64;
        size_t size = 64;
        _cleanup_free_ uint32_t *tail = NULL;

        while (size < 2 * st->n)
                size *= 2;
        st->slots = calloc(size, sizeof(HashSlot));
        tail = malloc(size * sizeof(uint32_t));
        if (!st->slots || !tail)
                return -ENOMEM;
        st->mask = size - 1;
        for (size_t i = 0; i < st->n; i++) {
                SymEntry *e = &st->v[i];
                uint32_t h = name_hash(e->sym.name, st->seed);
                for (size_t k = h & st->mask;; k = (k + 1) & st->mask) {
                        HashSlot *s = &st->slots[k];
                        if (++probes > budget)
                                return -ELOOP;
                        if (!s->head1) {
                                *s = (HashSlot) { h, (uint32_t)i + 1 };
                                tail[k] = (uint32_t)i;
                                e->head = true;
                                break;
                        }
                        if (s->hash == h && strcmp(st->v[s->head1 - 1].sym.name, e->sym.name) == 0) {
                                chain_append(st, s->head1 - 1, &tail[k], (uint32_t)i);
                                break;
                        }
                }
        }
        return 0;
}

/* What the name sort moves: the name's first 8 bytes as a big-endian number (keys
 * compare as strcmp() compares those bytes), the entry and the name. */
typedef struct SortSlot {
        uint64_t key;
        uint32_t idx;
        const char *name;
} SortSlot;

static uint64_t name_key(const char *name) {
        uint64_t k = 0;
        bool end = false;

        for (int i = 0; i < 8; i++) {
                end = end || !name[i];
                k = k << 8 | (end ? 0 : (uint8_t)name[i]);
        }
        return k;
}

static int slot_cmp_name(const void *a, const void *b) {
        const SortSlot *x = a, *y = b;
        int c;

        if (x->key != y->key)
                return x->key < y->key ? -1 : 1;
        c = (x->key & 0xff) ? strcmp(x->name + 8, y->name + 8) : 0;
        if (c)
                return c;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The sorted index: each name's first entry, in strcmp() order of the names. */
static int index_by_sort(SymTab *st) {
        _cleanup_free_ SortSlot *slots = malloc(MAX(st->n, (size_t)1) * sizeof(SortSlot));

        st->sorted = malloc(MAX(st->n, (size_t)1) * sizeof(uint32_t));
        if (!slots || !st->sorted)
                return -ENOMEM;
        for (size_t i = 0; i < st->n; i++)
                slots[i] = (SortSlot) { name_key(st->v[i].sym.name), (uint32_t)i, st->v[i].sym.name };
        qsort(slots, st->n, sizeof(SortSlot), slot_cmp_name);
        for (size_t k = 0; k < st->n; ) {
                uint32_t head = slots[k].idx, tail = head;
                st->v[head].head = true;
                st->sorted[st->n_sorted++] = head;
                for (k++; k < st->n && slots[k].key == slots[k - 1].key &&
                          strcmp(slots[k].name, slots[k - 1].name) == 0; k++)
                        chain_append(st, head, &tail, slots[k].idx);
        }
        return 0;
}

/* Reads .symtab (of the separate debug file when there is one) then .dynsym into st->v
 * and indexes the names. */
static int symtab_load(SymTab *st, SymTabIndex index) {
        size_t total = symtab_sections(st, false);
        int r;

        if (total >= UINT32_MAX - 1)
                return -E2BIG;
        st->v = malloc(MAX(total, (size_t)1) * sizeof(SymEntry));
        if (!st->v)
                return -ENOMEM;
        if (st->debug_elf) {
                r = read_load_segments(st);
                if (r < 0)
                        return r;
        }
        symtab_sections(st, true);
        free(st->segs);
        st->segs = NULL;
        st->n_segs = 0;

        st->seed = process_seed();
        st->index = index;
        if (index == SYMTAB_INDEX_HASH) {
                r = index_by_hash(st);
                if (r != -ELOOP)
                        return r;
                /* Names that collide: the sorted index bounds the cost. */
                free(st->slots);
                st->slots = NULL;
                chains_reset(st);
                st->index = SYMTAB_INDEX_SORTED;
        }
        return index_by_sort(st);
}

int symtab_open_fd(int fd, SymTab **ret) {
        return symtab_open_module_fd(fd, NULL, ret);
}

int symtab_open_module_fd(int fd, const char *path, SymTab **ret) {
        return symtab_open_module_fd_index(fd, path, SYMTAB_INDEX_HASH, ret);
}

int symtab_open_module_fd_index(int fd, const char *path, SymTabIndex index, SymTab **ret) {
        _cleanup_(symtab_freep) SymTab *st = calloc(1, sizeof(SymTab));
        if (!st)
                return -ENOMEM;
        st->debug_fd = -1;
        st->library = -1;
        st->want_index = index;
        st->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (st->fd < 0)
                return negative_errno();
        if (path && !(st->path = strdup(path)))
                return -ENOMEM;

        int r = elf_open_fd(st->fd, &st->elf);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(st);
        return 0;
}

/* A stripped file (no .symtab) of a module: its static functions are in a separate
 * debug file, looked for once. */
static int symtab_find_debug(const SymTab *cst) {
        SymTab *st = (SymTab *)cst;    /* see the top of the file */
        int r;

        if (st->debug_looked)
                return 0;
        st->debug_looked = true;
        if (!st->path || elf_has_section_type(st->elf, SHT_SYMTAB))
                return 0;
        r = debugfile_find(st->elf, st->path, &st->debug_fd, &st->debug_path, &st->searched);
        if (r < 0 && r != -ENOENT)
                return r;
        if (st->debug_fd >= 0)
                return elf_open_fd(st->debug_fd, &st->debug_elf);
        return 0;
}

/* The symbols read and indexed, on the first query that needs them; 0, or the error of
 * that first try, for every query after it. */
int symtab__ready(const SymTab *cst) {
        SymTab *st = (SymTab *)cst;    /* see the top of the file */
        int r;

        if (st->ready)
                return st->ready_err;
        st->ready = true;
        r = symtab_find_debug(st);
        if (r >= 0)
                r = symtab_load(st, st->want_index);
        st->ready_err = MIN(r, 0);
        return st->ready_err;
}

SymTabIndex symtab_index(const SymTab *st) {
        return symtab__ready(st) < 0 ? st->want_index : st->index;
}

int symtab_open(const char *path, SymTab **ret) {
        return symtab_open_module(path, NULL, ret);
}

int symtab_open_module(const char *open_path, const char *path, SymTab **ret) {
        _cleanup_close_ int fd = open(open_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        return symtab_open_module_fd(fd, path, ret);
}

const char *symtab_debug_path(const SymTab *st) {
        (void)symtab_find_debug(st);
        return st->debug_path;
}

const char *symtab_searched(const SymTab *st) {
        (void)symtab_find_debug(st);
        return st->searched;
}

void symtab_free(SymTab *st) {
        if (!st)
                return;
        if (st->elf)
                elf_end(st->elf);
        if (st->fd >= 0)
                close(st->fd);
        if (st->debug_elf)
                elf_end(st->debug_elf);
        if (st->debug_fd >= 0)
                close(st->debug_fd);
        free(st->path);
        free(st->debug_path);
        free(st->searched);
        free(st->v);
        free(st->slots);
        free(st->sorted);
        free(st->segs);
        free(st->by_addr);
        free(st->clones);
        free(st);
}

Elf *symtab_elf(const SymTab *st) {
        return st->elf;
}

/* The first entry (in table order) named name, or NO_ENTRY. */
static uint32_t symtab_first(const SymTab *st, const char *name) {
        if (st->index == SYMTAB_INDEX_HASH) {
                uint32_t h = name_hash(name, st->seed);
                for (size_t k = h & st->mask;; k = (k + 1) & st->mask) {
                        const HashSlot *s = &st->slots[k];
                        if (!s->head1)
                                return NO_ENTRY;
                        if (s->hash == h && strcmp(st->v[s->head1 - 1].sym.name, name) == 0)
                                return s->head1 - 1;
                }
        }
        size_t lo = 0, hi = st->n_sorted;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(st->v[st->sorted[mid]].sym.name, name);
                if (c == 0)
                        return st->sorted[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NO_ENTRY;
}

/* Global before weak; among equals, an exported default version first. */
static bool entry_better(const SymEntry *a, const SymEntry *b) {
        if (symtab__bind_rank(a->sym.bind) != symtab__bind_rank(b->sym.bind))
                return symtab__bind_rank(a->sym.bind) < symtab__bind_rank(b->sym.bind);
        return !a->hidden_version && b->hidden_version;
}

static int symtab_lookup_exact(const SymTab *st, const char *name, unsigned pos, Symbol *ret) {
        const SymEntry *best = NULL, *local = NULL;
        unsigned n_local = 0;

        for (uint32_t i = symtab_first(st, name); i != NO_ENTRY; i = st->v[i].next) {
                const SymEntry *e = &st->v[i];
                if (e->sym.bind == STB_LOCAL) {
                        /* Locals only come from .symtab, so chain order is .symtab order. */
                        n_local++;
                        if (pos == n_local || (pos == 0 && !local))
                                local = e;
                } else if (pos == 0 && (!best || entry_better(e, best)))
                        best = e;
        }

        if (pos > 0) {
                if (n_local < pos)
                        return -ENOENT;
                best = local;
        } else if (!best) {
                if (n_local > 1)
                        return -ENOTUNIQ;
                best = local;
        }
        if (!best)
                return -ENOENT;
        if (ret)
                *ret = best->sym;
        return 0;
}

/* The mangled name of the C++ symbols ("_Z...") that demangle to name. Aliases (a
 * constructor's C1 and C2 at one address) count as one, named by the least of their
 * names; different functions of that spelling give -ENOTUNIQ. A walk over every name:
 * only for a name that is no symbol and reads as a demangled one. */
static int symtab_find_demangled(const SymTab *st, const char *name, const char **ret) {
        char want[1024], have[1024];
        const SymEntry *found = NULL;
        bool several = false;
        int r;

        r = demangle_normalize(name, want, sizeof(want));
        if (r < 0)
                return -ENOENT;
        for (size_t i = 0; i < st->n; i++) {
                const SymEntry *e = &st->v[i];
                /* A name counts once, by its first entry. */
                if (!e->head || strncmp(e->sym.name, "_Z", 2) != 0)
                        continue;
                r = demangle(e->sym.name, have, sizeof(have));
                if (r == -ENOTSUP || r == -ENOMEM)
                        return r;
                if (r < 0 || strcmp(have, want) != 0)
                        continue;
                if (found && found->sym.value != e->sym.value)
                        several = true;
                if (!found || strcmp(e->sym.name, found->sym.name) < 0)
                        found = e;
        }
        if (several)
                return -ENOTUNIQ;
        if (!found)
                return -ENOENT;
        *ret = found->sym.name;
        return 0;
}

int symtab_lookup(const SymTab *st, const char *name, unsigned pos, Symbol *ret) {
        const char *mangled;
        int r = symtab__ready(st);

        if (r < 0)
                return r;
        r = symtab_lookup_exact(st, name, pos, ret);

        if (r != -ENOENT || !demangle_looks_demangled(name))
                return r;
        r = symtab_find_demangled(st, name, &mangled);
        if (r < 0)
                return r;
        return symtab_lookup_exact(st, mangled, pos, ret);
}

unsigned symtab_scans_before_index = 16;

/* Whether the file is a shared library: a DT_SONAME, and not a position-independent
 * executable (DF_1_PIE). The static linker exports every global of default or protected
 * visibility of a shared library in its .dynsym (a version script's "local:" makes it
 * STB_LOCAL), so that .symtab adds no exported definition to it; an executable's globals
 * stay out of .dynsym unless asked. A file it cannot tell counts as no library. */
static bool is_library(const SymTab *cst) {
        SymTab *st = (SymTab *)cst;    /* see the top of the file */
        bool soname = false, pie = false;
        GElf_Ehdr eh;

        if (st->library >= 0)
                return st->library;
        st->library = 0;
        if (!gelf_getehdr(st->elf, &eh) || eh.e_type != ET_DYN)
                return false;
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(st->elf, scn)); ) {
                GElf_Shdr sh;
                Elf_Data *d;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNAMIC || sh.sh_entsize == 0 ||
                    !(d = elf_getdata(scn, NULL)))
                        continue;
                for (size_t i = 0, n = MIN((size_t)(sh.sh_size / sh.sh_entsize), d->d_size / sh.sh_entsize); i < n; i++) {
                        GElf_Dyn dyn;
                        if (!gelf_getdyn(d, (int)i, &dyn) || dyn.d_tag == DT_NULL)
                                break;
                        soname = soname || dyn.d_tag == DT_SONAME;
                        pie = pie || (dyn.d_tag == DT_FLAGS_1 && (dyn.d_un.d_val & DF_1_PIE));
                }
        }
        st->library = soname && !pie;
        return st->library;
}

/* symtab_lookup_exported() of a shared library whose symbols are not read: a walk over
 * its .dynsym, where every candidate is. 1 with the best in *ret, 0 when none, -EAGAIN
 * when two tie (the index breaks ties by table order, .symtab first: let it). */
static int dynsym_exported(const SymTab *st, const char *name, Symbol *ret) {
        SymEntry best = {}, e;
        bool found = false, tie = false;

        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(st->elf, scn)); ) {
                GElf_Shdr sh;
                Elf_Data *d, *versym, *strings;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || sh.sh_entsize == 0 ||
                    !(d = elf_getdata(scn, NULL)))
                        continue;
                versym = companion(st->elf, scn, SHT_GNU_versym);
                strings = string_table(st->elf, sh.sh_link);
                for (size_t i = 1, n = section_entries(scn, &sh); i < n; i++) {
                        GElf_Sym sym;
                        const char *sname;
                        unsigned char bind, vis;
                        if (!gelf_getsym(d, (int)i, &sym))
                                continue;
                        sname = sym_name(st->elf, sh.sh_link, strings, sym.st_name);
                        bind = GELF_ST_BIND(sym.st_info);
                        vis = GELF_ST_VISIBILITY(sym.st_other);
                        if (!sname || strcmp(sname, name) != 0 || !sym_wanted(&sym, sname, 0) ||
                            sym.st_shndx == SHN_XINDEX || (bind != STB_GLOBAL && bind != STB_WEAK) ||
                            (vis != STV_DEFAULT && vis != STV_PROTECTED))
                                continue;
                        e = (SymEntry) {
                                .sym = { sname, sym.st_value, sym.st_size, GELF_ST_TYPE(sym.st_info), bind, vis,
                                         sym.st_shndx, false },
                                .hidden_version = versym_hidden(versym, i),
                        };
                        if (!found || entry_better(&e, &best)) {
                                best = e;
                                found = true;
                                tie = false;
                        } else if (!entry_better(&best, &e))
                                tie = true;
                }
        }
        if (tie)
                return -EAGAIN;
        if (found && ret)
                *ret = best.sym;
        return found;
}

/* Prefers what .dynsym exports; falls back to a .symtab global of default or protected
 * visibility (an executable's non-exported globals), which a patch may still want. A
 * shared library whose symbols are not read yet is answered from its .dynsym alone (see
 * is_library()), without reading libc's debug file for each name a patch imports; the
 * index is built once a file was asked symtab_scans_before_index times. */
int symtab_lookup_exported(const SymTab *st, const char *name, Symbol *ret) {
        const SymEntry *best = NULL;
        int r;

        /* A name with a '@' is a versioned name as .symtab spells it (memcpy@GLIBC_2.2.5),
         * which .dynsym spells without: only the index knows it. */
        if (!st->ready && st->scans < symtab_scans_before_index && !strchr(name, '@') && is_library(st)) {
                ((SymTab *)st)->scans++;        /* see the top of the file */
                r = dynsym_exported(st, name, ret);
                if (r != -EAGAIN)
                        return r > 0 ? 0 : -ENOENT;
        }
        r = symtab__ready(st);
        if (r < 0)
                return r;

        for (uint32_t i = symtab_first(st, name); i != NO_ENTRY; i = st->v[i].next) {
                const SymEntry *e = &st->v[i];
                if (e->sym.bind != STB_GLOBAL && e->sym.bind != STB_WEAK)
                        continue;
                if (e->sym.visibility != STV_DEFAULT && e->sym.visibility != STV_PROTECTED)
                        continue;
                if (!best || (e->in_dynsym && !best->in_dynsym) ||
                    (e->in_dynsym == best->in_dynsym && entry_better(e, best)))
                        best = e;
        }
        if (!best)
                return -ENOENT;
        if (ret)
                *ret = best->sym;
        return 0;
}

const char *symtab_find_import(const SymTab *st, const char *const *names) {
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(st->elf, scn)); ) {
                GElf_Shdr sh;
                Elf_Data *d;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || sh.sh_entsize == 0 ||
                    !(d = elf_getdata(scn, NULL)))
                        continue;
                for (size_t i = 1, n = section_entries(scn, &sh); i < n; i++) {
                        GElf_Sym s;
                        const char *name;
                        if (!gelf_getsym(d, (int)i, &s) || s.st_shndx != SHN_UNDEF ||
                            !(name = elf_strptr(st->elf, sh.sh_link, s.st_name)))
                                continue;
                        for (size_t k = 0; names[k]; k++)
                                if (strcmp(name, names[k]) == 0)
                                        return names[k];
                }
        }
        return NULL;
}

/* A walk over the file's own tables while its symbols are not read (a single question
 * does not pay for the index, nor for the debug file); the index once they are. */
bool symtab_file_defines(const SymTab *st, const char *name) {
        if (st->ready && st->ready_err == 0) {
                for (uint32_t i = symtab_first(st, name); i != NO_ENTRY; i = st->v[i].next)
                        if (!st->v[i].sym.from_debug_file || st->v[i].in_dynsym)
                                return true;
                return false;
        }
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(st->elf, scn)); ) {
                GElf_Shdr sh;
                Elf_Data *d, *xdata, *strings;
                if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) ||
                    sh.sh_entsize == 0 || !(d = elf_getdata(scn, NULL)))
                        continue;
                xdata = companion(st->elf, scn, SHT_SYMTAB_SHNDX);
                strings = string_table(st->elf, sh.sh_link);
                for (size_t i = 1, n = section_entries(scn, &sh); i < n; i++) {
                        GElf_Sym sym;
                        Elf32_Word xshndx = 0;
                        const char *sname;
                        if (!gelf_getsymshndx(d, xdata, (int)i, &sym, &xshndx))
                                continue;
                        sname = sym_name(st->elf, sh.sh_link, strings, sym.st_name);
                        if (sname && strcmp(sname, name) == 0 && sym_wanted(&sym, sname, xshndx))
                                return true;
                }
        }
        return false;
}

bool symtab_has_section(const SymTab *st, const char *name) {
        size_t shstrndx;

        if (elf_getshdrstrndx(st->elf, &shstrndx) < 0)
                return false;
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(st->elf, scn)); ) {
                GElf_Shdr sh;
                const char *n;
                if (gelf_getshdr(scn, &sh) && (n = elf_strptr(st->elf, shstrndx, sh.sh_name)) &&
                    strcmp(n, name) == 0)
                        return true;
        }
        return false;
}

/* See symtab.h. A walk over every symbol: once per patched function. Of several starting
 * at the lowest address, the least name (then the first in table order). */
int symtab_first_start(const SymTab *st, uint64_t lo, uint64_t hi, Symbol *ret) {
        const Symbol *best = NULL;
        int r = symtab__ready(st);

        if (r < 0)
                return r;

        for (size_t i = 0; i < st->n; i++) {
                const Symbol *s = &st->v[i].sym;
                if (st->v[i].dropped || s->shndx == SHN_ABS || s->value < lo || s->value >= hi)
                        continue;
                if (!best || s->value < best->value ||
                    (s->value == best->value && strcmp(s->name, best->name) < 0))
                        best = s;
        }
        if (!best)
                return -ENOENT;
        *ret = *best;
        return 0;
}
