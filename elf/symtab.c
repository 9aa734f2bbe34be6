/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Symbols of one ELF file. All defined symbols of .symtab and .dynsym (a .dynsym entry
 * that repeats a .symtab one is dropped) go into one array, in .symtab order then
 * .dynsym order. Two indexes over it make lookups O(log n): by name (ties kept in
 * table order, so the pos-th local is the pos-th of its name run) and, for functions,
 * by address.
 */

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/debugfile.h"
#include "elf/demangle.h"
#include "elf/symtab.h"

typedef struct SymEntry {
        Symbol sym;
        uint64_t key;            /* the name's first 8 bytes, big-endian, zero-padded (name_key) */
        uint32_t seq;            /* position in the combined table order */
        bool from_dynsym;        /* this entry was read from .dynsym */
        bool in_dynsym;          /* present in .dynsym (exported to the dynamic linker) */
        bool hidden_version;     /* a non-default symbol version (name@VER, not name@@VER) */
} SymEntry;

struct SymTab {
        int fd;
        Elf *elf;
        int debug_fd;            /* the separate debug file the .symtab came from, or -1 */
        Elf *debug_elf;
        char *debug_path;
        char *searched;          /* what was searched, for messages (debugfile.c) */
        SymEntry *v;             /* sorted by (name, seq) */
        size_t n;
        uint32_t *by_addr;       /* indexes into v of sized functions, sorted by value */
        size_t n_addr;
};

int elf_open_fd(int fd, Elf **ret) {
        if (elf_version(EV_CURRENT) == EV_NONE)
                return -ELIBBAD;

        Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
        if (!elf)
                return -ENOEXEC;
        if (elf_kind(elf) != ELF_K_ELF || gelf_getclass(elf) != ELFCLASS64) {
                elf_end(elf);
                return -ENOEXEC;
        }
        *ret = elf;
        return 0;
}

/* Whether a symbol table entry is worth indexing: defined, named, not a section or file. */
static bool sym_wanted(const GElf_Sym *s, const char *name, Elf32_Word xshndx) {
        unsigned type = GELF_ST_TYPE(s->st_info);

        if (!name || !*name)
                return false;
        if (s->st_shndx == SHN_UNDEF || (s->st_shndx == SHN_XINDEX && xshndx == SHN_UNDEF))
                return false;
        return type != STT_SECTION && type != STT_FILE;
}

bool elf_has_section_type(Elf *elf, Elf32_Word type) {
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn)); ) {
                GElf_Shdr sh;
                if (gelf_getshdr(scn, &sh) && sh.sh_type == type)
                        return true;
        }
        return false;
}

/* A symbol of a separate debug file is trusted only where the running file has
 * something: [value, value+size) inside one of its PT_LOAD segments, an executable one
 * for a function. The build-id already ties the two files together; this bounds what a
 * damaged or foreign debug file can name. */
static bool debug_sym_in_image(Elf *elf, const GElf_Sym *s) {
        bool func = GELF_ST_TYPE(s->st_info) == STT_FUNC || GELF_ST_TYPE(s->st_info) == STT_GNU_IFUNC;
        size_t nph;

        if (s->st_shndx == SHN_ABS || elf_getphdrnum(elf, &nph) < 0)
                return false;
        for (size_t i = 0; i < nph; i++) {
                GElf_Phdr ph;
                if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD)
                        continue;
                if (func && !(ph.p_flags & PF_X))
                        continue;
                if (s->st_value >= ph.p_vaddr && s->st_value - ph.p_vaddr <= ph.p_memsz &&
                    s->st_size <= ph.p_memsz - (s->st_value - ph.p_vaddr))
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

/* The first 8 bytes of name as a big-endian number, zero past its end: keys compare as
 * strcmp() compares the names' first 8 bytes, so that sorting (every operation of
 * ulpctl --direct sorts libc's 3,000 names) calls strcmp() only on long common prefixes. */
static uint64_t name_key(const char *name) {
        uint64_t k = 0;
        bool end = false;

        for (int i = 0; i < 8; i++) {
                end = end || !name[i];
                k = k << 8 | (end ? 0 : (uint8_t)name[i]);
        }
        return k;
}

/* Appends the wanted symbols of one symbol table section to st->v. */
static int symtab_add_section(SymTab *st, Elf *elf, Elf_Scn *scn, const GElf_Shdr *sh, bool dyn,
                              size_t *alloc) {
        Elf_Data *data = elf_getdata(scn, NULL);
        Elf_Data *xdata = NULL, *versym = NULL;
        if (!data || sh->sh_entsize == 0)
                return 0;

        /* The companion sections: extended section indexes, symbol versions. */
        for (Elf_Scn *x = NULL; (x = elf_nextscn(elf, x)); ) {
                GElf_Shdr xs;
                if (!gelf_getshdr(x, &xs))
                        continue;
                if (xs.sh_type == SHT_SYMTAB_SHNDX && xs.sh_link == elf_ndxscn(scn))
                        xdata = elf_getdata(x, NULL);
                if (dyn && xs.sh_type == SHT_GNU_versym && xs.sh_link == elf_ndxscn(scn))
                        versym = elf_getdata(x, NULL);
        }

        size_t count = sh->sh_size / sh->sh_entsize;
        for (size_t i = 1; i < count; i++) {
                GElf_Sym s;
                Elf32_Word xshndx = 0;
                if (!gelf_getsymshndx(data, xdata, (int)i, &s, &xshndx))
                        continue;
                const char *name = elf_strptr(elf, sh->sh_link, s.st_name);
                if (!sym_wanted(&s, name, xshndx))
                        continue;
                if (elf != st->elf && !debug_sym_in_image(st->elf, &s))
                        continue;

                if (st->n == *alloc) {
                        *alloc = *alloc ? *alloc * 2 : 256;
                        SymEntry *v = reallocarray(st->v, *alloc, sizeof(SymEntry));
                        if (!v)
                                return -ENOMEM;
                        st->v = v;
                }
                st->v[st->n] = (SymEntry) {
                        .sym = {
                                .name = name,
                                .value = s.st_value,
                                .size = s.st_size,
                                .type = GELF_ST_TYPE(s.st_info),
                                .bind = GELF_ST_BIND(s.st_info),
                                .visibility = GELF_ST_VISIBILITY(s.st_other),
                                .shndx = s.st_shndx == SHN_XINDEX ? (uint16_t)xshndx : s.st_shndx,
                        },
                        .key = name_key(name),
                        .seq = (uint32_t)st->n,
                        .from_dynsym = dyn,
                        .in_dynsym = dyn,
                        .hidden_version = versym_hidden(versym, i),
                };
                st->v[st->n].sym.from_debug_file = elf != st->elf;
                st->n++;
        }
        return 0;
}

/* What the name sort moves: 24 bytes instead of a whole entry, and the comparisons
 * read this array, not the entries, until two keys are equal. */
typedef struct NameSlot {
        uint64_t key;
        uint32_t idx;            /* into st->v, which is in seq order before the sort */
        const char *name;
} NameSlot;

static int slot_cmp_name(const void *a, const void *b) {
        const NameSlot *x = a, *y = b;
        int c;

        if (x->key != y->key)
                return x->key < y->key ? -1 : 1;
        c = (x->key & 0xff) ? strcmp(x->name + 8, y->name + 8) : 0;
        if (c)
                return c;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* st->v sorted by name, then seq (a name's entries in table order). */
static int symtab_sort_names(SymTab *st) {
        _cleanup_free_ NameSlot *slots = malloc(st->n * sizeof(NameSlot));
        _cleanup_free_ SymEntry *sorted = malloc(st->n * sizeof(SymEntry));

        if (!slots || !sorted)
                return -ENOMEM;
        for (size_t i = 0; i < st->n; i++)
                slots[i] = (NameSlot) { st->v[i].key, (uint32_t)i, st->v[i].sym.name };
        qsort(slots, st->n, sizeof(NameSlot), slot_cmp_name);
        for (size_t i = 0; i < st->n; i++)
                sorted[i] = st->v[slots[i].idx];
        memcpy(st->v, sorted, st->n * sizeof(SymEntry));
        return 0;
}

/* Drops .dynsym entries that repeat a .symtab entry of the same name and value (the
 * .symtab one is marked exported instead). v must be sorted by name. */
static void symtab_dedupe(SymTab *st) {
        size_t out = 0;

        for (size_t i = 0; i < st->n; i++) {
                SymEntry *e = &st->v[i];
                bool dup = false;

                /* Earlier entries of the same name that came from .symtab. */
                for (size_t j = out; e->from_dynsym && j-- > 0; ) {
                        SymEntry *p = &st->v[j];
                        if (strcmp(p->sym.name, e->sym.name) != 0)
                                break;
                        if (!p->from_dynsym && p->sym.value == e->sym.value) {
                                p->in_dynsym = true;
                                p->hidden_version = e->hidden_version;
                                dup = true;
                                break;
                        }
                }
                if (!dup)
                        st->v[out++] = *e;
        }
        st->n = out;
}

static bool sym_is_function(const Symbol *s) {
        return (s->type == STT_FUNC || s->type == STT_GNU_IFUNC ||
                (s->type == STT_NOTYPE && s->size > 0)) && s->size > 0;
}

/* Binding rank for aliases at one address: the global name is the one to report. */
static int bind_rank(unsigned char bind) {
        return bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2;
}

static int addr_cmp(const void *a, const void *b, void *userdata) {
        const SymTab *st = userdata;
        const SymEntry *x = &st->v[*(const uint32_t *)a];
        const SymEntry *y = &st->v[*(const uint32_t *)b];

        if (x->sym.value != y->sym.value)
                return x->sym.value < y->sym.value ? -1 : 1;
        if (bind_rank(x->sym.bind) != bind_rank(y->sym.bind))
                return bind_rank(x->sym.bind) - bind_rank(y->sym.bind);
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Builds the by-address index of sized functions. Called once, from symtab_open_fd(). */
static int symtab_index_addr(SymTab *st) {
        st->by_addr = calloc(st->n ? st->n : 1, sizeof(uint32_t));
        if (!st->by_addr)
                return -ENOMEM;
        for (size_t i = 0; i < st->n; i++)
                if (sym_is_function(&st->v[i].sym))
                        st->by_addr[st->n_addr++] = (uint32_t)i;
        qsort_r(st->by_addr, st->n_addr, sizeof(uint32_t), addr_cmp, st);
        return 0;
}

/* Reads .symtab (of the separate debug file when there is one) then .dynsym into st->v,
 * sorts it by name and drops duplicates. */
static int symtab_load(SymTab *st) {
        size_t alloc = 0;
        int r;

        for (int pass = 0; pass < 2; pass++) {
                Elf32_Word want = pass == 0 ? SHT_SYMTAB : SHT_DYNSYM;
                Elf *elf = pass == 0 && st->debug_elf ? st->debug_elf : st->elf;
                for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn)); ) {
                        GElf_Shdr sh;
                        if (!gelf_getshdr(scn, &sh) || sh.sh_type != want)
                                continue;
                        r = symtab_add_section(st, elf, scn, &sh, pass == 1, &alloc);
                        if (r < 0)
                                return r;
                }
        }
        if (st->n > UINT32_MAX)
                return -E2BIG;
        if (st->n > 0) {
                r = symtab_sort_names(st);
                if (r < 0)
                        return r;
        }
        symtab_dedupe(st);
        return symtab_index_addr(st);
}

int symtab_open_fd(int fd, SymTab **ret) {
        return symtab_open_module_fd(fd, NULL, ret);
}

int symtab_open_module_fd(int fd, const char *path, SymTab **ret) {
        _cleanup_(symtab_freep) SymTab *st = calloc(1, sizeof(SymTab));
        if (!st)
                return -ENOMEM;
        st->debug_fd = -1;
        st->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (st->fd < 0)
                return negative_errno();

        int r = elf_open_fd(st->fd, &st->elf);
        if (r < 0)
                return r;
        /* A stripped file (no .symtab): its static functions are in a separate debug file. */
        if (path && !elf_has_section_type(st->elf, SHT_SYMTAB)) {
                r = debugfile_find(st->elf, path, &st->debug_fd, &st->debug_path, &st->searched);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (st->debug_fd >= 0) {
                        r = elf_open_fd(st->debug_fd, &st->debug_elf);
                        if (r < 0)
                                return r;
                }
        }
        r = symtab_load(st);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(st);
        return 0;
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
        return st->debug_path;
}

const char *symtab_searched(const SymTab *st) {
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
        free(st->debug_path);
        free(st->searched);
        free(st->v);
        free(st->by_addr);
        free(st);
}

Elf *symtab_elf(const SymTab *st) {
        return st->elf;
}

/* The first entry (lowest seq) whose name is >= name, as an index into st->v. */
static size_t symtab_lower_bound(const SymTab *st, const char *name) {
        size_t lo = 0, hi = st->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(st->v[mid].sym.name, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* The run [*ret_first, *ret_end) of entries named name, in table order. */
static void symtab_name_run(const SymTab *st, const char *name, size_t *ret_first, size_t *ret_end) {
        size_t i = symtab_lower_bound(st, name), j = i;

        while (j < st->n && strcmp(st->v[j].sym.name, name) == 0)
                j++;
        *ret_first = i;
        *ret_end = j;
}

/* Global before weak; among equals, an exported default version first. */
static bool entry_better(const SymEntry *a, const SymEntry *b) {
        if (bind_rank(a->sym.bind) != bind_rank(b->sym.bind))
                return bind_rank(a->sym.bind) < bind_rank(b->sym.bind);
        return !a->hidden_version && b->hidden_version;
}

static int symtab_lookup_exact(const SymTab *st, const char *name, unsigned pos, Symbol *ret) {
        const SymEntry *best = NULL, *local = NULL;
        unsigned n_local = 0;
        size_t i, end;

        symtab_name_run(st, name, &i, &end);
        for (; i < end; i++) {
                const SymEntry *e = &st->v[i];
                if (e->sym.bind == STB_LOCAL) {
                        /* Locals only come from .symtab, so seq order is .symtab order. */
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

/* The mangled name of the C++ symbols ("_Z...", one contiguous run of the sorted table)
 * that demangle to name. Aliases (a constructor's C1 and C2 at one address) count as
 * one; different functions of that spelling give -ENOTUNIQ. */
static int symtab_find_demangled(const SymTab *st, const char *name, const char **ret) {
        char want[1024], have[1024];
        const SymEntry *found = NULL;
        int r;

        r = demangle_normalize(name, want, sizeof(want));
        if (r < 0)
                return -ENOENT;
        for (size_t i = symtab_lower_bound(st, "_Z"); i < st->n; i++) {
                const SymEntry *e = &st->v[i];
                if (strncmp(e->sym.name, "_Z", 2) != 0)
                        break;
                if (i > 0 && strcmp(st->v[i - 1].sym.name, e->sym.name) == 0)
                        continue;
                r = demangle(e->sym.name, have, sizeof(have));
                if (r == -ENOTSUP || r == -ENOMEM)
                        return r;
                if (r < 0 || strcmp(have, want) != 0)
                        continue;
                if (found && found->sym.value != e->sym.value)
                        return -ENOTUNIQ;
                if (!found)
                        found = e;
        }
        if (!found)
                return -ENOENT;
        *ret = found->sym.name;
        return 0;
}

int symtab_lookup(const SymTab *st, const char *name, unsigned pos, Symbol *ret) {
        const char *mangled;
        int r = symtab_lookup_exact(st, name, pos, ret);

        if (r != -ENOENT || !demangle_looks_demangled(name))
                return r;
        r = symtab_find_demangled(st, name, &mangled);
        if (r < 0)
                return r;
        return symtab_lookup_exact(st, mangled, pos, ret);
}

/* Prefers what .dynsym exports; falls back to a .symtab global of default or protected
 * visibility (an executable's non-exported globals), which a patch may still want. */
int symtab_lookup_exported(const SymTab *st, const char *name, Symbol *ret) {
        const SymEntry *best = NULL;
        size_t i, end;

        symtab_name_run(st, name, &i, &end);
        for (; i < end; i++) {
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

/* Binary search for the last function starting at or before vaddr, then a short walk
 * back in case an earlier, larger function encloses it (nested or overlapping symbols). */
int symtab_lookup_addr(const SymTab *st, uint64_t vaddr, Symbol *ret) {
        size_t lo = 0, hi = st->n_addr;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (st->v[st->by_addr[mid]].sym.value <= vaddr)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        /* lo is the first entry above vaddr. Aliases sort global-first, so walk back to
         * the first entry of the containing start address. */
        for (size_t k = lo, steps = 0; k-- > 0 && steps < 16; steps++) {
                const Symbol *s = &st->v[st->by_addr[k]].sym;
                if (vaddr >= s->value + s->size)
                        continue;
                while (k > 0 && st->v[st->by_addr[k - 1]].sym.value == s->value &&
                       vaddr < s->value + st->v[st->by_addr[k - 1]].sym.size)
                        s = &st->v[st->by_addr[--k]].sym;
                if (ret)
                        *ret = *s;
                return 0;
        }
        return -ENOENT;
}

/* Whether s is a sequence of compiler clone suffixes: ".constprop.N", ".isra.N",
 * ".part.N", ".cold", ".cold.N", ".lto_priv.N", ".clone.N", ".specialized.N" in any
 * combination, e.g. ".isra.0.cold" or ".constprop.0.isra.0". */
bool symbol_is_clone_suffix(const char *s) {
        static const char *const kinds[] = {
                "constprop", "isra", "part", "cold", "lto_priv", "clone", "specialized",
        };

        if (!*s)
                return false;
        while (*s) {
                size_t k;
                if (*s++ != '.')
                        return false;
                for (k = 0; k < ELEMENTSOF(kinds); k++) {
                        size_t l = strlen(kinds[k]);
                        if (strncmp(s, kinds[k], l) == 0 && (s[l] == '.' || s[l] == 0)) {
                                s += l;
                                break;
                        }
                }
                if (k == ELEMENTSOF(kinds))
                        return false;
                /* An optional ".N" number; "cold" often has none. */
                if (s[0] == '.' && s[1] >= '0' && s[1] <= '9') {
                        s++;
                        while (*s >= '0' && *s <= '9')
                                s++;
                }
        }
        return true;
}

int symtab_foreach_clone(const SymTab *st, const char *name,
                         void (*cb)(const Symbol *sym, void *userdata), void *userdata) {
        size_t len = strlen(name);
        _cleanup_free_ char *prefix = malloc(len + 2);
        if (!prefix)
                return -ENOMEM;
        memcpy(prefix, name, len);
        memcpy(prefix + len, ".", 2);

        /* Names starting with "NAME." form one contiguous run of the sorted array. */
        int n = 0;
        for (size_t i = symtab_lower_bound(st, prefix); i < st->n; i++) {
                const Symbol *s = &st->v[i].sym;
                if (strncmp(s->name, prefix, len + 1) != 0)
                        break;
                if (s->type != STT_FUNC || !symbol_is_clone_suffix(s->name + len))
                        continue;
                if (cb)
                        cb(s, userdata);
                n++;
        }
        return n;
}

/* Finds NT_GNU_BUILD_ID in one note data buffer; returns its length, 0 when absent. */
static int build_id_in_notes(Elf_Data *data, uint8_t *buf, size_t bufsize) {
        GElf_Nhdr nh;
        size_t off = 0, name_off, desc_off;

        while (data && (off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
                if (nh.n_type != NT_GNU_BUILD_ID || nh.n_namesz != 4 ||
                    memcmp((const char *)data->d_buf + name_off, "GNU", 4) != 0)
                        continue;
                if (nh.n_descsz == 0 || nh.n_descsz > bufsize)
                        return -ENOBUFS;
                memcpy(buf, (const char *)data->d_buf + desc_off, nh.n_descsz);
                return (int)nh.n_descsz;
        }
        return 0;
}

/* Looks in the PT_NOTE segments first (present in every loadable object), then in the
 * SHT_NOTE sections (present in separate debug files, which may lack the segments). */
int elf_read_build_id(Elf *elf, uint8_t *buf, size_t bufsize) {
        size_t nph = 0;
        int r;

        if (elf_getphdrnum(elf, &nph) == 0)
                for (size_t i = 0; i < nph; i++) {
                        GElf_Phdr ph;
                        if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_NOTE)
                                continue;
                        Elf_Data *d = elf_getdata_rawchunk(elf, (int64_t)ph.p_offset, ph.p_filesz,
                                                           ph.p_align == 8 ? ELF_T_NHDR8 : ELF_T_NHDR);
                        r = build_id_in_notes(d, buf, bufsize);
                        if (r != 0)
                                return r;
                }

        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn)); ) {
                GElf_Shdr sh;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
                        continue;
                r = build_id_in_notes(elf_getdata(scn, NULL), buf, bufsize);
                if (r != 0)
                        return r;
        }
        return 0;
}

const char *symtab_find_import(const SymTab *st, const char *const *names) {
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(st->elf, scn)); ) {
                GElf_Shdr sh;
                Elf_Data *d;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || sh.sh_entsize == 0 ||
                    !(d = elf_getdata(scn, NULL)))
                        continue;
                for (size_t i = 1; i < sh.sh_size / sh.sh_entsize; i++) {
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

/* See symtab.h. A walk over every symbol: once per patched function. */
int symtab_first_start(const SymTab *st, uint64_t lo, uint64_t hi, Symbol *ret) {
        const Symbol *best = NULL;

        for (size_t i = 0; i < st->n; i++) {
                const Symbol *s = &st->v[i].sym;
                if (s->shndx == SHN_ABS || s->value < lo || s->value >= hi)
                        continue;
                if (!best || s->value < best->value)
                        best = s;
        }
        if (!best)
                return -ENOENT;
        *ret = *best;
        return 0;
}
