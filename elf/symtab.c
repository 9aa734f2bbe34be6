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
#include "elf/symtab.h"

typedef struct SymEntry {
        Symbol sym;
        uint32_t seq;            /* position in the combined table order */
        bool from_dynsym;        /* this entry was read from .dynsym */
        bool in_dynsym;          /* present in .dynsym (exported to the dynamic linker) */
        bool hidden_version;     /* a non-default symbol version (name@VER, not name@@VER) */
} SymEntry;

struct SymTab {
        int fd;
        Elf *elf;
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

/* Whether .gnu.version marks symbol i as a hidden (non-default) version. */
static bool versym_hidden(Elf_Data *versym, size_t i) {
        GElf_Versym v;

        if (!versym || !gelf_getversym(versym, (int)i, &v))
                return false;
        return (v & 0x8000) != 0;
}

/* Appends the wanted symbols of one symbol table section to st->v. */
static int symtab_add_section(SymTab *st, Elf_Scn *scn, const GElf_Shdr *sh, bool dyn,
                              size_t *alloc) {
        Elf_Data *data = elf_getdata(scn, NULL);
        Elf_Data *xdata = NULL, *versym = NULL;
        if (!data || sh->sh_entsize == 0)
                return 0;

        /* The companion sections: extended section indexes, symbol versions. */
        for (Elf_Scn *x = NULL; (x = elf_nextscn(st->elf, x)); ) {
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
                const char *name = elf_strptr(st->elf, sh->sh_link, s.st_name);
                if (!sym_wanted(&s, name, xshndx))
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
                        .seq = (uint32_t)st->n,
                        .from_dynsym = dyn,
                        .in_dynsym = dyn,
                        .hidden_version = versym_hidden(versym, i),
                };
                st->n++;
        }
        return 0;
}

static int entry_cmp_name(const void *a, const void *b) {
        const SymEntry *x = a, *y = b;
        int c = strcmp(x->sym.name, y->sym.name);

        if (c)
                return c;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
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

/* Reads .symtab then .dynsym into st->v, sorts it by name and drops duplicates. */
static int symtab_load(SymTab *st) {
        size_t alloc = 0;
        int r;

        for (int pass = 0; pass < 2; pass++) {
                Elf32_Word want = pass == 0 ? SHT_SYMTAB : SHT_DYNSYM;
                for (Elf_Scn *scn = NULL; (scn = elf_nextscn(st->elf, scn)); ) {
                        GElf_Shdr sh;
                        if (!gelf_getshdr(scn, &sh) || sh.sh_type != want)
                                continue;
                        r = symtab_add_section(st, scn, &sh, pass == 1, &alloc);
                        if (r < 0)
                                return r;
                }
        }
        if (st->n > UINT32_MAX)
                return -E2BIG;
        if (st->n > 0)
                qsort(st->v, st->n, sizeof(SymEntry), entry_cmp_name);
        symtab_dedupe(st);
        return symtab_index_addr(st);
}

int symtab_open_fd(int fd, SymTab **ret) {
        _cleanup_(symtab_freep) SymTab *st = calloc(1, sizeof(SymTab));
        if (!st)
                return -ENOMEM;
        st->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (st->fd < 0)
                return negative_errno();

        int r = elf_open_fd(st->fd, &st->elf);
        if (r < 0)
                return r;
        r = symtab_load(st);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(st);
        return 0;
}

int symtab_open(const char *path, SymTab **ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        return symtab_open_fd(fd, ret);
}

void symtab_free(SymTab *st) {
        if (!st)
                return;
        if (st->elf)
                elf_end(st->elf);
        if (st->fd >= 0)
                close(st->fd);
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

int symtab_lookup(const SymTab *st, const char *name, unsigned pos, Symbol *ret) {
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
