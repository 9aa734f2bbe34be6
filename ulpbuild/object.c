/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The relocatable objects ulp-build compares (ulp-build-diff.c): their sections,
 * symbols and relocations, and what a relocation refers to, independent of where things
 * sit in the object. */

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errfmt.h"
#include "ulpbuild/ulp-build-diff.h"

static bool name_is_label(const char *n) {
        return n[0] == '.' && n[1] == 'L';
}

bool sec_is_code(const Obj *o, size_t i) {
        return o->sh[i].sh_type == SHT_PROGBITS && (o->sh[i].sh_flags & SHF_EXECINSTR) && o->sh[i].sh_size > 0;
}

bool sec_is_strings(const Obj *o, size_t i) {
        return (o->sh[i].sh_flags & (SHF_MERGE | SHF_STRINGS)) == (SHF_MERGE | SHF_STRINGS);
}

/* A symbol that names a function or variable of the source (not a label or section). */
bool sym_is_named(const Obj *o, size_t s) {
        int t = GELF_ST_TYPE(o->sym[s].st_info);
        return s != 0 && (t == STT_FUNC || t == STT_OBJECT || t == STT_NOTYPE || t == STT_TLS) &&
               o->sym[s].st_shndx != SHN_UNDEF && o->sym[s].st_shndx < SHN_LORESERVE &&
               o->symname[s][0] && !name_is_label(o->symname[s]);
}

/* Every relocation of every SHT_RELA section must be readable, apply to a section of
 * the object and name a symbol of its table: checked once here, so that what reads
 * them later (obj_rela(), rel_target()) never meets a bad one. */
static int check_relas(const Obj *o, char *err, size_t errlen) {
        for (size_t i = 1; i < o->shnum; i++) {
                if (o->sh[i].sh_type != SHT_RELA)
                        continue;
                if (o->sh[i].sh_info == 0 || o->sh[i].sh_info >= o->shnum)
                        return fail(err, errlen, -EINVAL, "%s: relocation section %zu applies to section %" PRIu32,
                                    o->path, i, (uint32_t)o->sh[i].sh_info);
                if (o->rela_of[o->sh[i].sh_info] != i)
                        return fail(err, errlen, -EINVAL, "%s: two relocation sections apply to section %" PRIu32,
                                    o->path, (uint32_t)o->sh[i].sh_info);
                if (!o->sh[i].sh_entsize)
                        continue;
                if (!o->data[i] || o->data[i]->d_size != o->sh[i].sh_size)
                        return fail(err, errlen, -EINVAL, "%s: relocation section %zu cannot be read", o->path, i);
                for (size_t k = 0, n = o->sh[i].sh_size / o->sh[i].sh_entsize; k < n; k++) {
                        GElf_Rela r;
                        if (!gelf_getrela(o->data[i], (int)k, &r))
                                return fail(err, errlen, -EINVAL, "%s: bad relocation %zu of section %zu", o->path, k, i);
                        if (GELF_R_SYM(r.r_info) >= o->nsym)
                                return fail(err, errlen, -EINVAL, "%s: relocation against symbol %zu of %zu", o->path,
                                            (size_t)GELF_R_SYM(r.r_info), o->nsym);
                }
        }
        return 0;
}

static int obj_read_symbols(Obj *o, size_t symtab, char *err, size_t errlen) {
        if (!symtab || !o->data[symtab] || !o->sh[symtab].sh_entsize ||
            o->data[symtab]->d_size != o->sh[symtab].sh_size)
                return fail(err, errlen, -EINVAL, "%s: no symbol table", o->path);
        o->nsym = o->sh[symtab].sh_size / o->sh[symtab].sh_entsize;
        if (o->nsym == 0)
                return fail(err, errlen, -EINVAL, "%s: an empty symbol table", o->path);
        o->sym = xcalloc(o->nsym, sizeof(*o->sym));
        o->symname = xcalloc(o->nsym, sizeof(*o->symname));
        for (size_t s = 0; s < o->nsym; s++) {
                if (!gelf_getsym(o->data[symtab], (int)s, &o->sym[s]))
                        return fail(err, errlen, -EINVAL, "%s: bad symbol %zu", o->path, s);
                o->symname[s] = elf_strptr(o->e, o->sh[symtab].sh_link, o->sym[s].st_name);
                if (!o->symname[s])
                        o->symname[s] = "";
                if (GELF_ST_TYPE(o->sym[s].st_info) == STT_FILE && !o->file[0])
                        o->file = o->symname[s];
        }
        return 0;
}

/* See ulp-build-diff.h. */
int obj_load(Obj *o, const char *path, Elf *e, char *err, size_t errlen) {
        size_t shstrndx, symtab = 0;
        GElf_Ehdr eh;
        int r;

        *o = (Obj){ .path = path, .e = e, .file = "" };
        if (!e || elf_kind(e) != ELF_K_ELF)
                return fail(err, errlen, -ENOEXEC, "%s is not an ELF file", path);
        if (!gelf_getehdr(e, &eh) || eh.e_type != ET_REL || eh.e_machine != EM_X86_64 ||
            gelf_getclass(e) != ELFCLASS64)
                return fail(err, errlen, -ENOEXEC, "%s is not an x86-64 relocatable object", path);
        if (elf_getshdrnum(e, &o->shnum) < 0 || elf_getshdrstrndx(e, &shstrndx) < 0 || o->shnum == 0)
                return fail(err, errlen, -EINVAL, "%s: no section headers", path);
        o->sh = xcalloc(o->shnum, sizeof(*o->sh));
        o->sname = xcalloc(o->shnum, sizeof(*o->sname));
        o->data = xcalloc(o->shnum, sizeof(*o->data));
        o->rela_of = xcalloc(o->shnum, sizeof(*o->rela_of));
        o->primary = xcalloc(o->shnum, sizeof(*o->primary));
        o->sname[0] = "";
        for (size_t i = 1; i < o->shnum; i++) {
                Elf_Scn *scn = elf_getscn(e, i);
                if (!scn || !gelf_getshdr(scn, &o->sh[i]))
                        return fail(err, errlen, -EINVAL, "%s: bad section %zu", path, i);
                o->sname[i] = elf_strptr(e, shstrndx, o->sh[i].sh_name);
                if (!o->sname[i])
                        o->sname[i] = "";
                if (o->sh[i].sh_type == SHT_REL)
                        return fail(err, errlen, -EINVAL, "%s: REL relocations", path);
                if (o->sh[i].sh_type != SHT_NOBITS) {
                        o->data[i] = elf_getdata(scn, NULL);
                        /* What reads bytes reads sh_size of them. */
                        if (o->data[i] && o->data[i]->d_size != o->sh[i].sh_size)
                                o->data[i] = NULL;
                }
                if (o->sh[i].sh_type == SHT_RELA && o->sh[i].sh_info < o->shnum && !o->rela_of[o->sh[i].sh_info])
                        o->rela_of[o->sh[i].sh_info] = i;
                if (o->sh[i].sh_type == SHT_SYMTAB && !symtab)
                        symtab = i;
        }
        r = obj_read_symbols(o, symtab, err, errlen);
        if (r >= 0)
                r = check_relas(o, err, errlen);
        if (r < 0)
                return r;
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
        return 0;
}

void obj_open(Obj *o, const char *path) {
        char err[512];
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                die("cannot open %s: %s", path, strerror(errno));
        if (obj_load(o, path, elf_begin(fd, ELF_C_READ, NULL), err, sizeof(err)) < 0)
                die("%s", err);
}

/* See ulp-build-diff.h. */
void obj_close(Obj *o) {
        free(o->sh);
        free(o->sname);
        free(o->data);
        free(o->rela_of);
        free(o->primary);
        free(o->sym);
        free(o->symname);
        if (o->e)
                elf_end(o->e);
        *o = (Obj){ .file = "" };
}

size_t obj_nrela(const Obj *o, size_t sec) {
        size_t r = o->rela_of[sec];
        return r && o->sh[r].sh_entsize ? o->sh[r].sh_size / o->sh[r].sh_entsize : 0;
}

GElf_Rela obj_rela(const Obj *o, size_t sec, size_t i) {
        GElf_Rela rel;
        if (!gelf_getrela(o->data[o->rela_of[sec]], (int)i, &rel))
                die("%s: bad relocation %zu of %s", o->path, i, o->sname[sec]);
        return rel;
}

/* The section holding the function or variable called name, or 0. */
size_t obj_find(const Obj *o, const char *name, bool code) {
        for (size_t i = 1; i < o->shnum; i++)
                if (o->primary[i] && sec_is_code(o, i) == code && strcmp(o->symname[o->primary[i]], name) == 0)
                        return i;
        return 0;
}

/* ---- what a relocation refers to ---- */

unsigned rel_width(unsigned type) {
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

bool rel_pcrel(unsigned type) {
        return type == R_X86_64_PC32 || type == R_X86_64_PLT32 || type == R_X86_64_GOTPCREL ||
               type == R_X86_64_GOTPCRELX || type == R_X86_64_REX_GOTPCRELX;
}



Target rel_target(const Obj *o, const GElf_Rela *r) {
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

const unsigned char *sec_bytes(const Obj *o, size_t sec) {
        return o->sh[sec].sh_type == SHT_PROGBITS && o->data[sec] && o->sh[sec].sh_size ? o->data[sec]->d_buf : NULL;
}

/* Writes into key what relocation i of sec refers to, independent of where things sit
 * in the object, and returns the addend to compare alongside. */
static int64_t rel_key(const Obj *o, const GElf_Rela *r, char *key, size_t keylen, bool deep);

static uint64_t sec_hash(const Obj *o, size_t sec, bool deep) {
        const unsigned char *b = sec_bytes(o, sec);
        /* Without bytes (.bss, or a section that cannot be read), its size alone. */
        size_t n = b ? o->sh[sec].sh_size : 0, nr = obj_nrela(o, sec);
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
        h = fnv(h, &o->sh[sec].sh_size, sizeof(o->sh[sec].sh_size));
        free(copy);
        return h;
}

/* a + b + c as the 64-bit sums the linker makes: wrapping, never undefined (a hostile
 * object's addend or symbol value may be anything). */
static int64_t sum_wrap(int64_t a, int64_t b, int64_t c) {
        return (int64_t)((uint64_t)a + (uint64_t)b + (uint64_t)c);
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
                return (int64_t)((uint64_t)r->r_addend + o->sym[t.sym].st_value - o->sym[t.named].st_value);
        }
        if (sec_is_strings(o, t.sec)) {
                const unsigned char *b = sec_bytes(o, t.sec);
                int64_t off = sum_wrap((int64_t)o->sym[t.sym].st_value, r->r_addend, rel_pcrel(type) ? 4 : 0);
                if (b && off >= 0 && (uint64_t)off < o->sh[t.sec].sh_size &&
                    memchr(b + off, 0, o->sh[t.sec].sh_size - (size_t)off)) {
                        snprintf(key, keylen, "S:%s", (const char *)b + off);
                        return 0;
                }
        }
        snprintf(key, keylen, "A:%s:%016" PRIx64, o->sname[t.sec], deep ? sec_hash(o, t.sec, false) : 0);
        return sum_wrap(r->r_addend, (int64_t)o->sym[t.sym].st_value, 0);
}

/* Whether section a of x and b of y hold the same code or data once relocated. */
bool sec_same(const Obj *x, size_t a, const Obj *y, size_t b) {
        return x->sh[a].sh_size == y->sh[b].sh_size && x->sh[a].sh_type == y->sh[b].sh_type &&
               sec_hash(x, a, true) == sec_hash(y, b, true);
}