/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * ulp-build-diff: the object-level half of ulp-build (docs/ulp-build.md).
 *
 *     ulp-build-diff --binary PATH --out DIR --name NAME [--diff FILE --tree DIR] ORIG.o PATCHED.o [...]
 *
 * Each pair is one translation unit compiled twice with -ffunction-sections
 * -fdata-sections: from the clean tree and from the tree with the fix. The program
 *
 *  1. finds the functions whose code differs, after normalizing what differs only by
 *     relocation (a reference is compared by what it refers to: a symbol's name, a
 *     string literal's text, an anonymous section's content), and the new ones;
 *  2. refuses what a live patch cannot do: changed initialized data or a changed size
 *     of a variable, thread-local variables, references it cannot rebind;
 *  3. walks what the changed functions reference: new functions, string literals and
 *     jump tables travel in the patch; every variable and function that the running
 *     program already has is rebound to the program's copy by a ulp_rels record
 *     (include/ulp/patch.h), by name and, for a static symbol, its position among the
 *     locals of that name in PATH's symbol table (the one in the same source file);
 *  4. writes DIR/meta.s (ulp_info, ulp_build_ids, ulp_funcs, ulp_rels, and hidden
 *     placeholders for symbols defined by PATH that no object of the patch defines) and,
 *     for pair K, DIR/anchors-K (objcopy --add-symbol arguments that name the start of
 *     each section a record points into).
 *
 * The driver (ulp-build) links the patched objects with meta.o using --gc-sections:
 * the records are the only roots, so only what the changed functions reach is kept.
 *
 * Output on stdout, one line each: "changed NAME REASON", "new NAME", "inlined NAME",
 * "rebind NAME". REASON is "changed" when the diff names the function, else "inlines
 * changed X()" when a changed function X of its source file exists only inlined, else
 * "code-differs" (a macro or a header changed it). A refusal
 * is one line on stderr and exit status 1; a usage or I/O error exits 2.
 */

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ULP_META_MAGIC_STR "0x31504c55"

static const char *binary_path;

__attribute__((format(printf, 1, 2), noreturn))
static void refuse(const char *fmt, ...) {
        va_list ap;

        fputs("ulp-build: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...) {
        va_list ap;

        fputs("ulp-build-diff: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(2);
}

static void *xcalloc(size_t n, size_t sz) {
        void *p = calloc(n ? n : 1, sz);
        if (!p)
                die("out of memory");
        return p;
}

/* ---- relocatable objects ---- */

typedef struct Obj {
        const char *path;
        Elf *e;
        size_t shnum;
        GElf_Shdr *sh;
        const char **sname;
        Elf_Data **data;
        size_t *rela_of;         /* section → its SHT_RELA section, 0 for none */
        GElf_Sym *sym;
        const char **symname;
        size_t nsym;
        size_t *primary;         /* section → its named symbol at offset 0, 0 for none */
        const char *file;        /* the STT_FILE name: the source file's */
} Obj;

static bool name_is_label(const char *n) {
        return n[0] == '.' && n[1] == 'L';
}

static bool sec_is_code(const Obj *o, size_t i) {
        return o->sh[i].sh_type == SHT_PROGBITS && (o->sh[i].sh_flags & SHF_EXECINSTR) && o->sh[i].sh_size > 0;
}

static bool sec_is_strings(const Obj *o, size_t i) {
        return (o->sh[i].sh_flags & (SHF_MERGE | SHF_STRINGS)) == (SHF_MERGE | SHF_STRINGS);
}

/* A symbol that names a function or variable of the source (not a label or section). */
static bool sym_is_named(const Obj *o, size_t s) {
        int t = GELF_ST_TYPE(o->sym[s].st_info);
        return s != 0 && (t == STT_FUNC || t == STT_OBJECT || t == STT_NOTYPE || t == STT_TLS) &&
               o->sym[s].st_shndx != SHN_UNDEF && o->sym[s].st_shndx < SHN_LORESERVE &&
               o->symname[s][0] && !name_is_label(o->symname[s]);
}

static void obj_open(Obj *o, const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t shstrndx;

        o->path = path;
        if (fd < 0)
                die("cannot open %s: %s", path, strerror(errno));
        o->e = elf_begin(fd, ELF_C_READ, NULL);
        if (!o->e || elf_kind(o->e) != ELF_K_ELF)
                die("%s is not an ELF file", path);
        GElf_Ehdr eh;
        if (!gelf_getehdr(o->e, &eh) || eh.e_type != ET_REL || eh.e_machine != EM_X86_64)
                die("%s is not an x86-64 relocatable object", path);
        if (elf_getshdrnum(o->e, &o->shnum) < 0 || elf_getshdrstrndx(o->e, &shstrndx) < 0)
                die("%s: no section headers", path);
        o->sh = xcalloc(o->shnum, sizeof(*o->sh));
        o->sname = xcalloc(o->shnum, sizeof(*o->sname));
        o->data = xcalloc(o->shnum, sizeof(*o->data));
        o->rela_of = xcalloc(o->shnum, sizeof(*o->rela_of));
        o->primary = xcalloc(o->shnum, sizeof(*o->primary));
        size_t symtab = 0;
        for (size_t i = 1; i < o->shnum; i++) {
                Elf_Scn *scn = elf_getscn(o->e, i);
                if (!scn || !gelf_getshdr(scn, &o->sh[i]))
                        die("%s: bad section %zu", path, i);
                o->sname[i] = elf_strptr(o->e, shstrndx, o->sh[i].sh_name);
                if (!o->sname[i])
                        o->sname[i] = "";
                o->data[i] = elf_getdata(scn, NULL);
                if (o->sh[i].sh_type == SHT_RELA && o->sh[i].sh_info < o->shnum)
                        o->rela_of[o->sh[i].sh_info] = i;
                if (o->sh[i].sh_type == SHT_REL)
                        die("%s: REL relocations", path);
                if (o->sh[i].sh_type == SHT_SYMTAB)
                        symtab = i;
        }
        if (!symtab || !o->data[symtab] || !o->sh[symtab].sh_entsize)
                die("%s: no symbol table", path);
        o->nsym = o->sh[symtab].sh_size / o->sh[symtab].sh_entsize;
        o->sym = xcalloc(o->nsym, sizeof(*o->sym));
        o->symname = xcalloc(o->nsym, sizeof(*o->symname));
        o->file = "";
        for (size_t s = 0; s < o->nsym; s++) {
                if (!gelf_getsym(o->data[symtab], (int)s, &o->sym[s]))
                        die("%s: bad symbol %zu", path, s);
                o->symname[s] = elf_strptr(o->e, o->sh[symtab].sh_link, o->sym[s].st_name);
                if (!o->symname[s])
                        o->symname[s] = "";
                if (GELF_ST_TYPE(o->sym[s].st_info) == STT_FILE && !o->file[0])
                        o->file = o->symname[s];
        }
        /* The primary symbol of a section: a function or variable at its start, a global
         * one first (an alias pair keeps the name the program calls it by). */
        for (size_t s = 1; s < o->nsym; s++) {
                size_t sec = o->sym[s].st_shndx;
                if (!sym_is_named(o, s) || o->sym[s].st_value != 0 || sec >= o->shnum)
                        continue;
                if (!o->primary[sec] || (GELF_ST_BIND(o->sym[o->primary[sec]].st_info) == STB_LOCAL &&
                                         GELF_ST_BIND(o->sym[s].st_info) != STB_LOCAL))
                        o->primary[sec] = s;
        }
}

static size_t obj_nrela(const Obj *o, size_t sec) {
        size_t r = o->rela_of[sec];
        return r && o->sh[r].sh_entsize ? o->sh[r].sh_size / o->sh[r].sh_entsize : 0;
}

static GElf_Rela obj_rela(const Obj *o, size_t sec, size_t i) {
        GElf_Rela rel;
        if (!gelf_getrela(o->data[o->rela_of[sec]], (int)i, &rel))
                die("%s: bad relocation %zu of %s", o->path, i, o->sname[sec]);
        return rel;
}

/* The section holding the function or variable called name, or 0. */
static size_t obj_find(const Obj *o, const char *name, bool code) {
        for (size_t i = 1; i < o->shnum; i++)
                if (o->primary[i] && sec_is_code(o, i) == code && strcmp(o->symname[o->primary[i]], name) == 0)
                        return i;
        return 0;
}

/* ---- what a relocation refers to ---- */

static unsigned rel_width(unsigned type) {
        switch (type) {
        case R_X86_64_64: case R_X86_64_PC64:
                return 8;
        case R_X86_64_PC32: case R_X86_64_PLT32: case R_X86_64_32: case R_X86_64_32S:
        case R_X86_64_GOTPCREL: case R_X86_64_GOTPCRELX: case R_X86_64_REX_GOTPCRELX:
        case R_X86_64_TPOFF32: case R_X86_64_GOTTPOFF: case R_X86_64_TLSGD: case R_X86_64_TLSLD:
        case R_X86_64_DTPOFF32:
                return 4;
        default:
                return 0;
        }
}

static bool rel_pcrel(unsigned type) {
        return type == R_X86_64_PC32 || type == R_X86_64_PLT32 || type == R_X86_64_GOTPCREL ||
               type == R_X86_64_GOTPCRELX || type == R_X86_64_REX_GOTPCRELX;
}

typedef struct Target {
        size_t sym;              /* the relocation's symbol */
        size_t sec;              /* the section it lands in, 0 when undefined */
        size_t named;            /* the function or variable it refers to, 0 for none */
} Target;

static Target rel_target(const Obj *o, const GElf_Rela *r) {
        Target t = { .sym = GELF_R_SYM(r->r_info) };

        if (t.sym >= o->nsym)
                die("%s: relocation against symbol %zu of %zu", o->path, t.sym, o->nsym);
        if (o->sym[t.sym].st_shndx == SHN_UNDEF)
                return t;
        t.sec = o->sym[t.sym].st_shndx < o->shnum ? o->sym[t.sym].st_shndx : 0;
        if (sym_is_named(o, t.sym))
                t.named = t.sym;
        else if (GELF_ST_TYPE(o->sym[t.sym].st_info) == STT_SECTION && t.sec)
                t.named = o->primary[t.sec];
        return t;
}

/* FNV-1a, to compare anonymous sections by content. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
        const unsigned char *b = p;
        for (size_t i = 0; i < n; i++)
                h = (h ^ b[i]) * 0x100000001b3ull;
        return h;
}

static const unsigned char *sec_bytes(const Obj *o, size_t sec) {
        return o->sh[sec].sh_type == SHT_PROGBITS && o->data[sec] ? o->data[sec]->d_buf : NULL;
}

/* Writes into key what relocation i of sec refers to, independent of where things sit
 * in the object, and returns the addend to compare alongside. */
static int64_t rel_key(const Obj *o, const GElf_Rela *r, char *key, size_t keylen, bool deep);

static uint64_t sec_hash(const Obj *o, size_t sec, bool deep) {
        const unsigned char *b = sec_bytes(o, sec);
        size_t n = o->sh[sec].sh_size, nr = obj_nrela(o, sec);
        unsigned char *copy = xcalloc(n, 1);
        uint64_t h = 0xcbf29ce484222325ull;

        if (b)
                memcpy(copy, b, n);
        for (size_t i = 0; i < nr; i++) {
                GElf_Rela r = obj_rela(o, sec, i);
                unsigned w = rel_width(GELF_R_TYPE(r.r_info));
                char key[512];
                if (w && r.r_offset <= n && w <= n - r.r_offset)
                        memset(copy + r.r_offset, 0, w);
                int64_t a = deep ? rel_key(o, &r, key, sizeof(key), true) : r.r_addend;
                if (!deep)
                        snprintf(key, sizeof(key), "%s", o->symname[GELF_R_SYM(r.r_info) < o->nsym ?
                                                                  GELF_R_SYM(r.r_info) : 0]);
                h = fnv(h, &r.r_offset, sizeof(r.r_offset));
                h = fnv(h, &a, sizeof(a));
                h = fnv(h, key, strlen(key) + 1);
        }
        h = fnv(h, copy, n);
        h = fnv(h, &n, sizeof(n));
        free(copy);
        return h;
}

static int64_t rel_key(const Obj *o, const GElf_Rela *r, char *key, size_t keylen, bool deep) {
        Target t = rel_target(o, r);
        unsigned type = GELF_R_TYPE(r->r_info);

        if (!t.sec) {
                snprintf(key, keylen, "U:%s", o->symname[t.sym]);
                return r->r_addend;
        }
        if (t.named) {
                snprintf(key, keylen, "N:%s", o->symname[t.named]);
                return r->r_addend + (int64_t)o->sym[t.sym].st_value - (int64_t)o->sym[t.named].st_value;
        }
        if (sec_is_strings(o, t.sec)) {
                const unsigned char *b = sec_bytes(o, t.sec);
                int64_t off = (int64_t)o->sym[t.sym].st_value + r->r_addend + (rel_pcrel(type) ? 4 : 0);
                if (b && off >= 0 && (uint64_t)off < o->sh[t.sec].sh_size &&
                    memchr(b + off, 0, o->sh[t.sec].sh_size - (size_t)off)) {
                        snprintf(key, keylen, "S:%s", (const char *)b + off);
                        return 0;
                }
        }
        snprintf(key, keylen, "A:%s:%016" PRIx64, o->sname[t.sec], deep ? sec_hash(o, t.sec, false) : 0);
        return r->r_addend + (int64_t)o->sym[t.sym].st_value;
}

/* Whether section a of x and b of y hold the same code or data once relocated. */
static bool sec_same(const Obj *x, size_t a, const Obj *y, size_t b) {
        return x->sh[a].sh_size == y->sh[b].sh_size && x->sh[a].sh_type == y->sh[b].sh_type &&
               sec_hash(x, a, true) == sec_hash(y, b, true);
}

/* ---- the running program's binary ---- */

typedef struct BinSym {
        char *name;              /* without @VERSION */
        const char *file;        /* for a local: the STT_FILE before it */
        bool local, func;
        uint64_t value, size;
} BinSym;

static BinSym *bsyms;
static size_t n_bsyms;
static char bin_object[256];     /* "" for an executable, else its soname or file name */
static char bin_build_id[2 * 64 + 1];
static Elf *bin_elf;

static void bin_read_symtab(Elf_Scn *scn, const GElf_Shdr *sh, bool dyn) {
        Elf_Data *d = elf_getdata(scn, NULL);
        size_t n = d && sh->sh_entsize ? sh->sh_size / sh->sh_entsize : 0;
        const char *file = "";

        bsyms = realloc(bsyms, (n_bsyms + n) * sizeof(*bsyms));
        if (!bsyms && n)
                die("out of memory");
        for (size_t s = 1; s < n; s++) {
                GElf_Sym y;
                const char *nm;
                if (!gelf_getsym(d, (int)s, &y) || !(nm = elf_strptr(bin_elf, sh->sh_link, y.st_name)))
                        continue;
                if (GELF_ST_TYPE(y.st_info) == STT_FILE) {
                        file = nm;
                        continue;
                }
                if (y.st_shndx == SHN_UNDEF || !nm[0] || GELF_ST_TYPE(y.st_info) == STT_SECTION)
                        continue;
                BinSym *b = &bsyms[n_bsyms++];
                b->name = strndup(nm, strcspn(nm, "@"));
                b->local = GELF_ST_BIND(y.st_info) == STB_LOCAL;
                b->file = b->local && !dyn ? file : "";
                b->func = GELF_ST_TYPE(y.st_info) == STT_FUNC || GELF_ST_TYPE(y.st_info) == STT_GNU_IFUNC;
                b->value = y.st_value;
                b->size = y.st_size;
        }
}

static void bin_open(const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        GElf_Ehdr eh;
        bool symtab = false, is_lib = false;
        size_t nph;

        if (fd < 0)
                die("cannot open %s: %s", path, strerror(errno));
        bin_elf = elf_begin(fd, ELF_C_READ, NULL);
        if (!bin_elf || !gelf_getehdr(bin_elf, &eh) || eh.e_machine != EM_X86_64 ||
            (eh.e_type != ET_EXEC && eh.e_type != ET_DYN))
                refuse("%s is not an x86-64 executable or shared library", path);
        if (eh.e_type == ET_DYN) {
                /* A PIE executable has an interpreter; a library has none. */
                is_lib = true;
                if (elf_getphdrnum(bin_elf, &nph) == 0)
                        for (size_t i = 0; i < nph; i++) {
                                GElf_Phdr ph;
                                if (gelf_getphdr(bin_elf, (int)i, &ph) && ph.p_type == PT_INTERP)
                                        is_lib = false;
                        }
        }
        Elf_Scn *scn = NULL;
        while ((scn = elf_nextscn(bin_elf, scn))) {
                GElf_Shdr sh;
                if (!gelf_getshdr(scn, &sh))
                        continue;
                if (sh.sh_type == SHT_SYMTAB) {
                        bin_read_symtab(scn, &sh, false);
                        symtab = true;
                } else if (sh.sh_type == SHT_DYNSYM) {
                        bin_read_symtab(scn, &sh, true);
                } else if (sh.sh_type == SHT_NOTE) {
                        Elf_Data *d = elf_getdata(scn, NULL);
                        size_t off = 0, noff, doff;
                        GElf_Nhdr nh;
                        while (d && (off = gelf_getnote(d, off, &nh, &noff, &doff)) > 0)
                                if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
                                    memcmp((char *)d->d_buf + noff, "GNU", 4) == 0 && nh.n_descsz <= 64)
                                        for (size_t i = 0; i < nh.n_descsz; i++)
                                                sprintf(bin_build_id + 2 * i, "%02x",
                                                        ((unsigned char *)d->d_buf)[doff + i]);
                } else if (sh.sh_type == SHT_DYNAMIC && is_lib) {
                        Elf_Data *d = elf_getdata(scn, NULL);
                        for (size_t i = 0; d && sh.sh_entsize && i < sh.sh_size / sh.sh_entsize; i++) {
                                GElf_Dyn dy;
                                const char *so;
                                if (gelf_getdyn(d, (int)i, &dy) && dy.d_tag == DT_SONAME &&
                                    (so = elf_strptr(bin_elf, sh.sh_link, dy.d_un.d_val)))
                                        snprintf(bin_object, sizeof(bin_object), "%s", so);
                        }
                }
        }
        if (!symtab)
                refuse("%s has no symbol table (.symtab): give the unstripped binary", path);
        if (eh.e_type == ET_EXEC)
                refuse("%s is not position-independent (built without -fPIE): not supported", path);
        if (is_lib && !bin_object[0]) {
                const char *base = strrchr(path, '/');
                snprintf(bin_object, sizeof(bin_object), "%s", base ? base + 1 : path);
        }
}

/* Finds the symbol of the program that name (defined in file, a local when local) is,
 * and its position for symtab_lookup(): 0 when the name alone finds it, else its rank
 * among the locals of that name. Returns the entry or NULL. */
static const BinSym *bin_lookup(const char *name, const char *file, bool local, unsigned *pos) {
        const BinSym *found = NULL;
        unsigned n_local = 0, n_all = 0, rank = 0;

        for (size_t i = 0; i < n_bsyms; i++) {
                const BinSym *b = &bsyms[i];
                if (strcmp(b->name, name) != 0)
                        continue;
                n_all++;
                if (b->local) {
                        n_local++;
                        if (local && !found && strcmp(b->file, file) == 0) {
                                found = b;
                                rank = n_local;
                        }
                } else if (!local && !found) {
                        found = b;
                }
        }
        *pos = found && local && n_all > 1 ? rank : 0;
        return found;
}

/* ---- the comparison and the walk ---- */

typedef enum { F_SAME, F_CHANGED, F_NEW } FuncState;

typedef struct Unit {
        int k;
        Obj orig, patched;
        FuncState *state;        /* per patched section */
        bool *kept;              /* per patched section: travels in the patch */
        bool *anchor;            /* per patched section: a record points into it */
        unsigned char **edited;  /* per patched section: its bytes with GOT loads rewritten, or NULL */
} Unit;

typedef struct Rebind {
        int unit;
        size_t sec;
        uint64_t offset;
        unsigned type;           /* ULP_REL_* */
        int64_t addend;
        char *symbol;
        unsigned pos;
} Rebind;

static Rebind *rebinds;
static size_t n_rebinds;

typedef struct Proxy {
        char *name;
} Proxy;

static Proxy *proxies;
static size_t n_proxies;
static bool any_change;

static char *strip_cold(const char *name) {
        char *s = strdup(name);
        char *c = s ? strstr(s, ".cold") : NULL;
        if (!s)
                die("out of memory");
        if (c && (c[5] == 0 || c[5] == '.'))
                *c = 0;
        return s;
}

static void compare_functions(Unit *u) {
        Obj *o = &u->orig, *p = &u->patched;

        for (size_t i = 1; i < p->shnum; i++) {
                if (!sec_is_code(p, i))
                        continue;
                if (!p->primary[i]) {
                        /* Code not in a function section of its own: compare it whole. */
                        size_t j;
                        for (j = 1; j < o->shnum; j++)
                                if (sec_is_code(o, j) && !o->primary[j] && strcmp(o->sname[j], p->sname[i]) == 0)
                                        break;
                        if (j == o->shnum || !sec_same(o, j, p, i))
                                refuse("%s: code in %s changed outside a function section of its own (was it "
                                       "built with -ffunction-sections?)", p->file, p->sname[i]);
                        continue;
                }
                size_t j = obj_find(o, p->symname[p->primary[i]], true);
                u->state[i] = !j ? F_NEW : sec_same(o, j, p, i) ? F_SAME : F_CHANGED;
        }
        /* A changed cold part changes its function: the new one jumps to the new part. */
        for (size_t i = 1; i < p->shnum; i++) {
                if (u->state[i] == F_SAME || !sec_is_code(p, i) || !p->primary[i] ||
                    !strstr(p->symname[p->primary[i]], ".cold"))
                        continue;
                char *parent = strip_cold(p->symname[p->primary[i]]);
                size_t j = obj_find(p, parent, true);
                if (j && u->state[j] == F_SAME)
                        u->state[j] = F_CHANGED;
                free(parent);
        }
}

/* The bytes of the program's function bs as its file holds them, or NULL. */
static const unsigned char *bin_bytes(const BinSym *bs) {
        Elf_Scn *scn = NULL;

        while ((scn = elf_nextscn(bin_elf, scn))) {
                GElf_Shdr sh;
                Elf_Data *d;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS || !(sh.sh_flags & SHF_EXECINSTR) ||
                    bs->value < sh.sh_addr || bs->value - sh.sh_addr > sh.sh_size ||
                    bs->size > sh.sh_size - (bs->value - sh.sh_addr))
                        continue;
                d = elf_getdata(scn, NULL);
                return d && d->d_buf && d->d_size == sh.sh_size ? (const unsigned char *)d->d_buf + (bs->value - sh.sh_addr)
                                                               : NULL;
        }
        return NULL;
}

/* The offset of the first byte where the clean build's function (section sec of o)
 * and the program's differ, the fields the linker fills left out (and the opcode bytes
 * before a GOT load it may rewrite), or UINT64_MAX when they agree. */
static uint64_t bin_differs(const Obj *o, size_t sec, const BinSym *bs) {
        const unsigned char *b = bin_bytes(bs), *a = sec_bytes(o, sec);
        size_t n = o->sh[sec].sh_size;
        bool *skip;
        uint64_t at = UINT64_MAX;

        if (!a || !b)
                return UINT64_MAX;       /* nothing to compare: the sizes agreed */
        skip = xcalloc(n, sizeof(*skip));
        for (size_t i = 0, nr = obj_nrela(o, sec); i < nr; i++) {
                GElf_Rela r = obj_rela(o, sec, i);
                unsigned type = GELF_R_TYPE(r.r_info), w = rel_width(type);
                uint64_t lo = r.r_offset, hi = r.r_offset + w;
                bool relaxable = type == R_X86_64_GOTPCRELX || type == R_X86_64_REX_GOTPCRELX ||
                                 type == R_X86_64_GOTTPOFF || type == R_X86_64_TLSGD || type == R_X86_64_TLSLD;
                if (relaxable)
                        lo = lo >= 4 ? lo - 4 : 0;
                if (type == R_X86_64_TLSGD || type == R_X86_64_TLSLD)
                        hi += 8;         /* the call after it is rewritten too */
                for (uint64_t k = lo; k < hi && k < n; k++)
                        skip[k] = true;
        }
        for (size_t k = 0; k < n && at == UINT64_MAX; k++)
                if (!skip[k] && a[k] != b[k])
                        at = k;
        free(skip);
        return at;
}

/* The clean build must be what the program runs: every function of the compared
 * source files that the program has must have its size and bytes there. */
static void check_clean_build(const Obj *o) {
        for (size_t i = 1; i < o->shnum; i++) {
                unsigned pos;
                if (!sec_is_code(o, i) || !o->primary[i])
                        continue;
                const char *fname = o->symname[o->primary[i]];
                const BinSym *bs = bin_lookup(fname, o->file, GELF_ST_BIND(o->sym[o->primary[i]].st_info) == STB_LOCAL,
                                              &pos);
                if (!bs || !bs->func)
                        continue;
                if (bs->size != o->sh[i].sh_size)
                        refuse("the clean build differs from %s: %s() of %s is %" PRIu64 " bytes there and %" PRIu64
                               " in the build; give the source tree and build command (compiler, flags) that built it",
                               binary_path, fname, o->file, bs->size, (uint64_t)o->sh[i].sh_size);
                uint64_t at = bin_differs(o, i, bs);
                if (at != UINT64_MAX)
                        refuse("the clean build differs from %s: %s() of %s has other bytes there (at +0x%" PRIx64 "); "
                               "give the source tree and build command (compiler, flags) that built it", binary_path,
                               fname, o->file, at);
        }
}

static void compare_data(Unit *u) {
        Obj *o = &u->orig, *p = &u->patched;

        for (size_t j = 1; j < o->shnum; j++) {
                if (!o->primary[j] || sec_is_code(o, j) || !(o->sh[j].sh_flags & SHF_ALLOC))
                        continue;
                const char *name = o->symname[o->primary[j]];
                size_t i = obj_find(p, name, false);
                if (!i)
                        continue;        /* no longer used by the fixed code */
                if (o->sh[j].sh_size != p->sh[i].sh_size)
                        refuse("the diff changes the size of %s in %s (%" PRIu64 " to %" PRIu64 " bytes): a live "
                               "patch cannot change the layout of data; keep new fields in shadow variables "
                               "(ulp/shadow.h)", name, p->file, (uint64_t)o->sh[j].sh_size,
                               (uint64_t)p->sh[i].sh_size);
                if (!sec_same(o, j, p, i))
                        refuse("the diff changes the initial value of %s in %s: a live patch cannot change data "
                               "the program already holds; set it from a post_patch callback, or keep new state "
                               "in shadow variables (ulp/shadow.h)", name, p->file);
        }
}

static void add_proxy(const char *name) {
        for (size_t i = 0; i < n_proxies; i++)
                if (strcmp(proxies[i].name, name) == 0)
                        return;
        proxies = realloc(proxies, (n_proxies + 1) * sizeof(*proxies));
        if (!proxies || !(proxies[n_proxies].name = strdup(name)))
                die("out of memory");
        n_proxies++;
}

static void add_rebind(Unit *u, size_t sec, const GElf_Rela *r, unsigned type, int64_t addend,
                       const char *symbol, unsigned pos) {
        rebinds = realloc(rebinds, (n_rebinds + 1) * sizeof(*rebinds));
        if (!rebinds)
                die("out of memory");
        rebinds[n_rebinds++] = (Rebind){ .unit = u->k, .sec = sec, .offset = r->r_offset, .type = type,
                                         .addend = addend, .symbol = strdup(symbol), .pos = pos };
        u->anchor[sec] = true;
}

/* Whether the program's copy of the function or variable named by patched symbol s
 * is what the new code must use: it exists in the program, and is neither changed
 * nor new. */
static bool use_programs(Unit *u, size_t s, const BinSym **bs, unsigned *pos) {
        Obj *p = &u->patched;
        size_t sec = p->sym[s].st_shndx;
        bool code = sec < p->shnum && sec_is_code(p, sec);
        const char *name = p->symname[s];

        if (code && u->state[sec] != F_SAME)
                return false;
        if (!obj_find(&u->orig, name, code))
                return false;            /* new in the fix */
        *bs = bin_lookup(name, p->file, GELF_ST_BIND(p->sym[s].st_info) == STB_LOCAL, pos);
        if (!*bs && !code)
                refuse("%s of %s is not in %s's symbol table: cannot refer to the program's copy", name, p->file,
                       binary_path);
        if (*bs && strstr(name, ".cold"))
                return false;
        return *bs != NULL;
}

static void walk(Unit *u, size_t sec);

/* Position-independent code reaches a global through the GOT: "mov sym@GOTPCREL(%rip),
 * %reg", or "call/jmp *sym@GOTPCREL(%rip)" without a PLT. For the program's own symbol,
 * the instruction is rewritten as the linker relaxes it when the symbol is local, into
 * "lea sym(%rip), %reg" or "addr32 call/jmp sym" of the same length, so that its field
 * is a displacement to the symbol, which a ulp_rels record fills. Returns false when
 * the instruction is none of those. */
static bool relax_got_load(Unit *u, size_t sec, uint64_t off) {
        Obj *p = &u->patched;
        const unsigned char *b = sec_bytes(p, sec);
        size_t n = p->sh[sec].sh_size;

        if (!b || off < 2 || off + 4 > n)
                return false;
        if (!u->edited[sec]) {
                u->edited[sec] = xcalloc(n, 1);
                memcpy(u->edited[sec], b, n);
        }
        unsigned char *e = u->edited[sec];
        unsigned char op = e[off - 2], modrm = e[off - 1];
        if ((modrm & 0xc7) != 0x05)
                return false;            /* not RIP-relative */
        if (op == 0x8b) {
                e[off - 2] = 0x8d;
                return true;
        }
        if (op == 0xff && (modrm == 0x15 || modrm == 0x25)) {
                e[off - 2] = 0x67;
                e[off - 1] = modrm == 0x15 ? 0xe8 : 0xe9;
                return true;
        }
        return false;
}

/* The ulp_rels type of a reference to the program's symbol, rewriting a GOT load. */
static unsigned rebind_type(Unit *u, size_t sec, const GElf_Rela *r, const char *fn, const char *target) {
        unsigned type = GELF_R_TYPE(r->r_info);

        switch (type) {
        case R_X86_64_PC32: case R_X86_64_PLT32:
                return 1;
        case R_X86_64_64:
                return 2;
        case R_X86_64_GOTPCREL: case R_X86_64_GOTPCRELX: case R_X86_64_REX_GOTPCRELX:
                if (relax_got_load(u, sec, r->r_offset))
                        return 1;
                refuse("%s in %s reaches %s through the GOT with an instruction ulp-build cannot rewrite",
                       fn, u->patched.file, target);
        default:
                refuse("%s in %s refers to %s with relocation type %u (built without -fPIE or -fPIC?): not "
                       "supported", fn, u->patched.file, target, type);
        }
}

static void walk_rel(Unit *u, size_t sec, const GElf_Rela *r) {
        Obj *p = &u->patched;
        unsigned type = GELF_R_TYPE(r->r_info);
        Target t = rel_target(p, r);
        const char *fn = p->primary[sec] ? p->symname[p->primary[sec]] : p->sname[sec];
        const BinSym *bs = NULL;
        unsigned pos = 0;

        if (!rel_width(type))
                refuse("%s in %s: relocation type %u is not supported", fn, p->file, type);
        if (type == R_X86_64_TPOFF32 || type == R_X86_64_GOTTPOFF || type == R_X86_64_TLSGD ||
            type == R_X86_64_TLSLD || type == R_X86_64_DTPOFF32 ||
            (t.sec && (p->sh[t.sec].sh_flags & SHF_TLS)))
                refuse("%s in %s uses the thread-local variable %s: not supported", fn, p->file,
                       p->symname[t.named ? t.named : t.sym]);
        if (!t.sec) {
                const char *name = p->symname[t.sym];
                /* Defined by the program itself (another source file, or a copy
                 * relocation of a library's variable): rebound to it. Else the patch's
                 * own dynamic linking finds it (a library function through the PLT). */
                bs = bin_lookup(name, "", false, &pos);
                if (!bs) {
                        if (type == R_X86_64_PC32 || type == R_X86_64_32 || type == R_X86_64_32S)
                                refuse("%s in %s refers to %s, which %s does not define, in a way only a "
                                       "link-time address can fill", fn, p->file, name, binary_path);
                        return;
                }
                unsigned rt = rebind_type(u, sec, r, fn, name);
                add_proxy(name);
                add_rebind(u, sec, r, rt, r->r_addend, name, pos);
                return;
        }
        if (t.named && use_programs(u, t.named, &bs, &pos)) {
                unsigned rt = rebind_type(u, sec, r, fn, p->symname[t.named]);
                int64_t a = r->r_addend + (int64_t)p->sym[t.sym].st_value - (int64_t)p->sym[t.named].st_value;
                add_rebind(u, sec, r, rt, a, p->symname[t.named], pos);
                return;
        }
        /* New code or data, a string literal, a jump table: it travels in the patch. */
        walk(u, t.sec);
}

static void walk(Unit *u, size_t sec) {
        Obj *p = &u->patched;

        if (u->kept[sec] || !(p->sh[sec].sh_flags & SHF_ALLOC))
                return;
        u->kept[sec] = true;
        for (size_t i = 0, n = obj_nrela(p, sec); i < n; i++) {
                GElf_Rela r = obj_rela(p, sec, i);
                walk_rel(u, sec, &r);
        }
}

/* ---- output ---- */

static FILE *out_open(const char *dir, const char *name) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "w");
        if (!f)
                die("cannot write %s: %s", path, strerror(errno));
        return f;
}

static void emit_string(FILE *f, const char *label, const char *s) {
        fprintf(f, "%s:\n        .byte ", label);
        for (; *s; s++)
                fprintf(f, "%u,", (unsigned char)*s);
        fprintf(f, "0\n");
}

/* The functions the diff touches: for each changed line, the function whose definition
 * encloses it in the fixed tree (the last line before it that starts a definition, as
 * diff -p finds hunk contexts). For the report only: what a change did is decided by
 * the code, never by this. */
static char **touched;
static size_t n_touched;

static bool is_ident(char c) {
        return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_touched(const char *name) {
        size_t n = strcspn(name, ".");  /* fee.part.0 is fee's */
        for (size_t i = 0; i < n_touched; i++)
                if (strlen(touched[i]) == n && strncmp(touched[i], name, n) == 0)
                        return true;
        return false;
}

/* The name a definition line starts, e.g. "static inline int fee(int amount) {" → fee. */
static char *definition_name(const char *line) {
        const char *paren = strchr(line, '(');
        const char *end, *start;

        if (!is_ident(line[0]) || !paren || strchr(line, ';') || strchr(line, '='))
                return NULL;
        for (end = paren; end > line && end[-1] == ' '; end--)
                ;
        for (start = end; start > line && is_ident(start[-1]); start--)
                ;
        return end > start ? strndup(start, (size_t)(end - start)) : NULL;
}

static void touch_line(const char *tree, const char *file, long lineno) {
        char path[4096], *line = NULL, *name = NULL;
        size_t cap = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", tree, file);
        if (!(f = fopen(path, "r")))
                return;
        for (long l = 1; l <= lineno && getline(&line, &cap, f) > 0; l++) {
                char *d = definition_name(line);
                if (d) {
                        free(name);
                        name = d;
                }
        }
        fclose(f);
        free(line);
        if (!name || is_touched(name)) {
                free(name);
                return;
        }
        touched = realloc(touched, (n_touched + 1) * sizeof(*touched));
        if (!touched)
                die("out of memory");
        touched[n_touched++] = name;
}

static void read_diff(const char *path, const char *tree) {
        FILE *f = fopen(path, "r");
        char *line = NULL, file[4096] = "";
        size_t cap = 0;
        long newline = 0;

        if (!f)
                die("cannot open %s: %s", path, strerror(errno));
        while (getline(&line, &cap, f) > 0) {
                long c;
                line[strcspn(line, "\n")] = 0;
                if (strncmp(line, "+++ ", 4) == 0) {
                        /* "+++ b/dir/file.c<TAB>date": drop the first component (patch -p1) */
                        const char *p = strchr(line + 4, '/');
                        snprintf(file, sizeof(file), "%.*s", (int)strcspn(p ? p + 1 : "", "\t"), p ? p + 1 : "");
                } else if (strncmp(line, "@@ ", 3) == 0 && sscanf(line, "@@ -%*d,%*d +%ld", &c) == 1) {
                        newline = c;
                } else if (strncmp(line, "@@ ", 3) == 0 && sscanf(line, "@@ -%*d +%ld", &c) == 1) {
                        newline = c;
                } else if (line[0] == '+' && file[0]) {
                        touch_line(tree, file, newline++);
                } else if (line[0] == '-' && file[0] && strncmp(line, "---", 3) != 0) {
                        touch_line(tree, file, newline);
                } else if (line[0] == ' ') {
                        newline++;
                }
        }
        free(line);
        fclose(f);
}

typedef struct Func {
        int unit;
        size_t sec;
        char *symbol;
        unsigned pos;
} Func;

int main(int argc, char **argv) {
        const char *out = NULL, *name = NULL, *diff_path = NULL, *tree = NULL;
        int i;

        for (i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--binary") == 0 && i + 1 < argc)
                        binary_path = argv[++i];
                else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
                        out = argv[++i];
                else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
                        name = argv[++i];
                else if (strcmp(argv[i], "--diff") == 0 && i + 1 < argc)
                        diff_path = argv[++i];
                else if (strcmp(argv[i], "--tree") == 0 && i + 1 < argc)
                        tree = argv[++i];
                else
                        break;
        }
        if (!binary_path || !out || !name || i >= argc || (argc - i) % 2 != 0)
                die("usage: ulp-build-diff --binary PATH --out DIR --name NAME ORIG.o PATCHED.o [...]");
        if (elf_version(EV_CURRENT) == EV_NONE)
                die("libelf too old");
        bin_open(binary_path);
        if (diff_path && tree)
                read_diff(diff_path, tree);

        int n_units = (argc - i) / 2;
        Unit *units = xcalloc((size_t)n_units, sizeof(*units));
        for (int k = 0; k < n_units; k++) {
                Unit *u = &units[k];
                u->k = k;
                obj_open(&u->orig, argv[i + 2 * k]);
                obj_open(&u->patched, argv[i + 2 * k + 1]);
                u->state = xcalloc(u->patched.shnum, sizeof(*u->state));
                u->kept = xcalloc(u->patched.shnum, sizeof(*u->kept));
                u->anchor = xcalloc(u->patched.shnum, sizeof(*u->anchor));
                u->edited = xcalloc(u->patched.shnum, sizeof(*u->edited));
                compare_functions(u);
                compare_data(u);
        }

        for (int k = 0; k < n_units; k++)
                check_clean_build(&units[k].orig);

        Func *funcs = NULL;
        size_t n_funcs = 0;
        /* A touched function the program has no symbol of exists only inlined. */
        const char *inlined = NULL;
        for (size_t t = 0; t < n_touched && !inlined; t++) {
                unsigned pos;
                bool found = false;
                for (size_t x = 0; x < n_bsyms && !found; x++)
                        found = bsyms[x].func && strcmp(bsyms[x].name, touched[t]) == 0;
                if (!found && !bin_lookup(touched[t], "", false, &pos))
                        inlined = touched[t];
        }
        for (int k = 0; k < n_units; k++) {
                Unit *u = &units[k];
                Obj *p = &u->patched;
                for (size_t s = 1; s < p->shnum; s++) {
                        if (u->state[s] != F_CHANGED)
                                continue;
                        const char *fname = p->symname[p->primary[s]];
                        any_change = true;
                        if (strstr(fname, ".cold"))
                                continue;        /* travels with its function */
                        unsigned pos;
                        const BinSym *bs = bin_lookup(fname, p->file,
                                                      GELF_ST_BIND(p->sym[p->primary[s]].st_info) == STB_LOCAL,
                                                      &pos);
                        if (!bs) {
                                /* Inlined everywhere in the program: its callers changed too. */
                                printf("inlined %s\n", fname);
                                continue;
                        }
                        funcs = realloc(funcs, (n_funcs + 1) * sizeof(*funcs));
                        if (!funcs)
                                die("out of memory");
                        funcs[n_funcs++] = (Func){ .unit = k, .sec = s, .symbol = strdup(fname), .pos = pos };
                        u->anchor[s] = true;
                        if (is_touched(fname) || (!inlined && !n_touched))
                                printf("changed %s changed\n", fname);
                        else if (inlined)
                                printf("changed %s inlines changed %s()\n", fname, inlined);
                        else
                                printf("changed %s code-differs\n", fname);
                        walk(u, s);
                }
        }
        for (int k = 0; k < n_units; k++) {
                Unit *u = &units[k];
                for (size_t s = 1; s < u->patched.shnum; s++)
                        if (u->state[s] == F_NEW && u->kept[s])
                                printf("new %s\n", u->patched.symname[u->patched.primary[s]]);
        }
        if (!any_change)
                refuse("the diff changes no function of %s", binary_path);
        if (n_funcs == 0)
                refuse("every function the diff changes is inlined into callers that did not change: nothing to "
                       "redirect in %s", binary_path);

        /* Placeholders: a symbol the program defines that no patched object defines gets
         * a hidden definition, so that the link resolves; its ulp_rels record overrides. */
        FILE *m = out_open(out, "meta.s");
        fprintf(m, "        .section .note.GNU-stack,\"\",@progbits\n");
        for (size_t x = 0; x < n_proxies; x++) {
                bool defined = false;
                for (int k = 0; k < n_units && !defined; k++) {
                        Obj *p = &units[k].patched;
                        for (size_t s = 1; s < p->nsym && !defined; s++)
                                defined = GELF_ST_BIND(p->sym[s].st_info) != STB_LOCAL &&
                                          p->sym[s].st_shndx != SHN_UNDEF && strcmp(p->symname[s], proxies[x].name) == 0;
                }
                if (defined)
                        continue;
                fprintf(m, "        .section .bss.ulp_placeholder.%zu,\"aw\",@nobits\n        .balign 16\n"
                           "        .globl \"%s\"\n        .hidden \"%s\"\n\"%s\":\n        .zero 16\n",
                        x, proxies[x].name, proxies[x].name, proxies[x].name);
        }
        fprintf(m, "        .section ulp_info,\"awR\",@progbits\n        .balign 8\n"
                   "        .long " ULP_META_MAGIC_STR ", 0\n        .quad .Lname, .Ldesc\n");
        if (bin_build_id[0])
                fprintf(m, "        .section ulp_build_ids,\"awR\",@progbits\n        .balign 8\n"
                           "        .long " ULP_META_MAGIC_STR ", 0\n        .quad .Lobject, .Lbuildid\n");
        fprintf(m, "        .section ulp_funcs,\"awR\",@progbits\n        .balign 8\n");
        for (size_t f = 0; f < n_funcs; f++)
                fprintf(m, "        .long " ULP_META_MAGIC_STR ", %u\n        .quad .Lobject, .Lf%zu, ulp_a%d_%zu, .Lf%zu\n",
                        funcs[f].pos, f, funcs[f].unit, funcs[f].sec, f);
        if (n_rebinds)
                fprintf(m, "        .section ulp_rels,\"awR\",@progbits\n        .balign 8\n");
        for (size_t x = 0; x < n_rebinds; x++)
                fprintf(m, "        .long " ULP_META_MAGIC_STR ", %u\n        .quad .Lobject, .Lr%zu, "
                           "ulp_a%d_%zu + %" PRIu64 "\n        .long %u, 0\n        .quad %" PRId64 "\n",
                        rebinds[x].pos, x, rebinds[x].unit, rebinds[x].sec, rebinds[x].offset, rebinds[x].type,
                        rebinds[x].addend);
        fprintf(m, "        .section .rodata.ulp_strings,\"a\",@progbits\n");
        emit_string(m, ".Lname", name);
        emit_string(m, ".Ldesc", "made by ulp-build");
        emit_string(m, ".Lobject", bin_object);
        emit_string(m, ".Lbuildid", bin_build_id);
        for (size_t f = 0; f < n_funcs; f++) {
                char label[32];
                snprintf(label, sizeof(label), ".Lf%zu", f);
                emit_string(m, label, funcs[f].symbol);
        }
        for (size_t x = 0; x < n_rebinds; x++) {
                char label[32];
                snprintf(label, sizeof(label), ".Lr%zu", x);
                emit_string(m, label, rebinds[x].symbol);
                printf("rebind %s\n", rebinds[x].symbol);
        }
        if (fclose(m) != 0)
                die("cannot write meta.s");

        for (int k = 0; k < n_units; k++) {
                Unit *u = &units[k];
                char fname[64];
                snprintf(fname, sizeof(fname), "anchors-%d", k);
                FILE *a = out_open(out, fname);
                for (size_t s = 1; s < u->patched.shnum; s++) {
                        if (!u->anchor[s])
                                continue;
                        for (size_t t = 1; t < u->patched.shnum; t++)
                                if (t != s && strcmp(u->patched.sname[t], u->patched.sname[s]) == 0)
                                        refuse("%s has two sections named %s: not supported", u->patched.file,
                                               u->patched.sname[s]);
                        fprintf(a, "--add-symbol\nulp_a%d_%zu=%s:0,global\n", k, s, u->patched.sname[s]);
                }
                for (size_t s = 1; s < u->patched.shnum; s++) {
                        char bin[64], path[4096];
                        if (!u->edited[s])
                                continue;
                        snprintf(bin, sizeof(bin), "section-%d-%zu", k, s);
                        FILE *b = out_open(out, bin);
                        if (fwrite(u->edited[s], 1, u->patched.sh[s].sh_size, b) != u->patched.sh[s].sh_size ||
                            fclose(b) != 0)
                                die("cannot write %s", bin);
                        snprintf(path, sizeof(path), "%s/%s", out, bin);
                        fprintf(a, "--update-section\n%s=%s\n", u->patched.sname[s], path);
                }
                if (fclose(a) != 0)
                        die("cannot write %s", fname);
        }
        return 0;
}
