/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Patch metadata (include/ulp/patch.h), read from the patch file without running it.
 * The records' integer fields are read from the section contents; their pointer fields
 * are what the dynamic linker would store there, recovered from the dynamic relocations
 * at the field's address; strings are then read from the file through PT_LOAD.
 */

#include <ctype.h>
#include <errno.h>
#include <gelf.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errfmt.h"
#include "common/macro.h"
#include "elf/patchfile.h"
#include "elf/patchmeta.h"
#include "elf/patchmeta-file.h"
#include "elf/relr.h"
#include "elf/symtab.h"
#include "patcher/x86_64/abi.h"
#include "ulp/patch.h"

static void patch_file_done(PatchFile *pf) {
        if (pf->elf)
                elf_end(pf->elf);
        if (pf->fd >= 0)
                close(pf->fd);
        free(pf->loads);
        free(pf->relocs);
        free(pf->funcs);
        free(pf->objects);
}

static uint32_t rec_u32(const Rec *rec, size_t off) {
        uint32_t v;
        memcpy(&v, rec->bytes + off, sizeof(v));
        return v;
}

/* The value the pointer field at rec+off takes at load bias 0: a relocation's value,
 * or 0 for a NULL pointer (no relocation and a zero word). */
static int rec_pointer(PatchFile *pf, const Rec *rec, size_t off, const char *field, uint64_t *ret) {
        const Reloc *rel = pf_find_reloc(pf, rec->vaddr + off);
        uint64_t word;

        if (rel && !rel->resolved)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: %s points outside the patch",
                            rec->sect, rec->index, field);
        if (rel) {
                *ret = rel->value;
                return 0;
        }
        memcpy(&word, rec->bytes + off, sizeof(word));
        if (word != 0)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: %s is a pointer without relocation",
                            rec->sect, rec->index, field);
        *ret = 0;
        return 0;
}

/* A copy of the string a pointer field points to; NULL for a NULL pointer unless
 * required. The string must be NUL-terminated inside one segment's file image. */
static int rec_string(PatchFile *pf, const Rec *rec, size_t off, const char *field, bool required,
                      char **ret) {
        uint64_t vaddr;
        int r = rec_pointer(pf, rec, off, field, &vaddr);
        if (r < 0)
                return r;

        *ret = NULL;
        if (vaddr == 0)
                return required ? fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: %s is NULL",
                                       rec->sect, rec->index, field) : 0;

        const GElf_Phdr *seg = pf_segment(pf, vaddr, 1);
        if (!seg)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: %s out of bounds", rec->sect, rec->index, field);
        const char *s = (const char *)pf->raw + seg->p_offset + (vaddr - seg->p_vaddr);
        size_t max = seg->p_filesz - (vaddr - seg->p_vaddr);
        const char *nul = memchr(s, 0, max);
        if (!nul)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: %s is not NUL-terminated",
                            rec->sect, rec->index, field);
        /* These strings end up in messages and logs: no control characters. */
        for (const char *p = s; p < nul; p++)
                if (*p < ' ' || *p > '~')
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: %s has a non-printable byte 0x%02x",
                                    rec->sect, rec->index, field, (unsigned char)*p);
        *ret = strndup(s, (size_t)(nul - s));
        return *ret ? 0 : -ENOMEM;
}

/* A code pointer field: 0 (when optional) or an address inside an executable segment. */
static int rec_code(PatchFile *pf, const Rec *rec, size_t off, const char *field, bool required,
                    uint64_t *ret) {
        int r = rec_pointer(pf, rec, off, field, ret);
        if (r < 0)
                return r;
        if (*ret == 0)
                return required ? fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: %s is NULL",
                                       rec->sect, rec->index, field) : 0;
        for (size_t i = 0; i < pf->n_loads; i++) {
                const GElf_Phdr *p = &pf->loads[i];
                if ((p->p_flags & PF_X) && *ret >= p->p_vaddr && *ret - p->p_vaddr < p->p_memsz) {
                        if (!pf_starts(pf, pf->funcs, pf->n_funcs, *ret))
                                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: %s is not the start of a "
                                            "function of the patch", rec->sect, rec->index, field);
                        return 0;
                }
        }
        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: %s is not code", rec->sect, rec->index, field);
}

/* Checks the magic of a record. */
static int rec_check_magic(PatchFile *pf, const Rec *rec) {
        if (rec_u32(rec, 0) != ULP_META_MAGIC)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: bad magic 0x%08x", rec->sect, rec->index,
                            rec_u32(rec, 0));
        return 0;
}

/* Finds section sect and checks it is an array of recsize-byte records inside the file.
 * *ret_n = 0 when it is absent. rec is set up for record 0. A second section of that
 * name is refused: an empty one put first would have the records skipped. */
static int pf_section(PatchFile *pf, const char *sect, size_t recsize, Rec *rec, size_t *ret_n) {
        size_t shstrndx;
        bool found = false;

        *ret_n = 0;
        *rec = (Rec) { .sect = sect };
        if (elf_getshdrstrndx(pf->elf, &shstrndx) < 0)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "no section name table");
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(pf->elf, scn)); ) {
                GElf_Shdr sh;
                const char *name = NULL;
                if (!gelf_getshdr(scn, &sh) || !(name = elf_strptr(pf->elf, shstrndx, sh.sh_name)) ||
                    strcmp(name, sect) != 0)
                        continue;
                if (found)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "there are two sections called %s", sect);
                found = true;
                if (sh.sh_type != SHT_PROGBITS || sh.sh_size % recsize != 0 ||
                    !pf_bytes(pf, sh.sh_addr, sh.sh_size) ||
                    sh.sh_offset != (uint64_t)(pf_bytes(pf, sh.sh_addr, sh.sh_size) - pf->raw))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "section %s is malformed (size %" PRIu64 ")",
                                    sect, (uint64_t)sh.sh_size);
                rec->vaddr = sh.sh_addr;
                rec->bytes = pf->raw + sh.sh_offset;
                *ret_n = sh.sh_size / recsize;
        }
        return 0;
}

/* Advances rec to record i of its section. */
static void rec_seek(Rec *rec, const Rec *first, size_t recsize, size_t i) {
        *rec = *first;
        rec->index = i;
        rec->vaddr += i * recsize;
        rec->bytes += i * recsize;
}

#define F(type, field) offsetof(struct type, field)

static int read_info(PatchFile *pf, PatchMeta *m) {
        Rec first, rec;
        size_t n;
        int r = pf_section(pf, ULP_SECTION_INFO, sizeof(struct ulp_meta_info), &first, &n);
        if (r < 0 || n == 0)
                return r;
        if (n > 1)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s: %zu records, at most one allowed", first.sect, n);

        rec_seek(&rec, &first, sizeof(struct ulp_meta_info), 0);
        if ((r = rec_check_magic(pf, &rec)) < 0 ||
            (r = rec_string(pf, &rec, F(ulp_meta_info, name), "name", true, &m->name)) < 0 ||
            (r = rec_string(pf, &rec, F(ulp_meta_info, description), "description", false,
                            &m->description)) < 0)
                return r;
        if (!*m->name)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[0]: empty name", first.sect);
        return 0;
}

static int read_funcs(PatchFile *pf, PatchMeta *m) {
        const size_t sz = sizeof(struct ulp_meta_func);
        Rec first, rec;
        size_t n;
        int r = pf_section(pf, ULP_SECTION_FUNCS, sz, &first, &n);
        if (r < 0 || n == 0)
                return r;
        if (!(m->funcs = calloc(n, sizeof(PatchFunc))))
                return -ENOMEM;
        m->n_funcs = n;           /* zeroed: patchmeta_free() copes with a partial read */

        for (size_t i = 0; i < n; i++) {
                PatchFunc *f = &m->funcs[i];
                rec_seek(&rec, &first, sz, i);
                f->pos = rec_u32(&rec, F(ulp_meta_func, pos));
                if ((r = rec_check_magic(pf, &rec)) < 0 ||
                    (r = rec_string(pf, &rec, F(ulp_meta_func, object), "object", true, &f->object)) < 0 ||
                    (r = rec_string(pf, &rec, F(ulp_meta_func, symbol), "symbol", true, &f->symbol)) < 0 ||
                    (r = rec_code(pf, &rec, F(ulp_meta_func, new_func), "new function", true,
                                  &f->new_vaddr)) < 0 ||
                    (r = rec_string(pf, &rec, F(ulp_meta_func, new_name), "new name", false,
                                    &f->new_name)) < 0)
                        return r;
                if (!*f->symbol)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: empty symbol name", rec.sect, i);
                if (!f->new_name && !(f->new_name = strdup("")))
                        return -ENOMEM;
        }
        return 0;
}

static int read_refs(PatchFile *pf, PatchMeta *m) {
        const size_t sz = sizeof(struct ulp_meta_ref);
        Rec first, rec;
        size_t n;
        int r = pf_section(pf, ULP_SECTION_REFS, sz, &first, &n);
        if (r < 0 || n == 0)
                return r;
        if (!(m->refs = calloc(n, sizeof(PatchRef))))
                return -ENOMEM;
        m->n_refs = n;           /* zeroed: patchmeta_free() copes with a partial read */

        for (size_t i = 0; i < n; i++) {
                PatchRef *f = &m->refs[i];
                rec_seek(&rec, &first, sz, i);
                f->pos = rec_u32(&rec, F(ulp_meta_ref, pos));
                if ((r = rec_check_magic(pf, &rec)) < 0 ||
                    (r = rec_string(pf, &rec, F(ulp_meta_ref, object), "object", true, &f->object)) < 0 ||
                    (r = rec_string(pf, &rec, F(ulp_meta_ref, symbol), "symbol", true, &f->symbol)) < 0 ||
                    (r = rec_pointer(pf, &rec, F(ulp_meta_ref, slot), "slot", &f->slot_vaddr)) < 0)
                        return r;
                if (!*f->symbol)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: empty symbol name", rec.sect, i);
                /* The slot is written before any new function runs: it must be patch data. */
                if (!pf_writable(pf, f->slot_vaddr, sizeof(void *)))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: slot is not writable patch data",
                                    rec.sect, i);
                if (!pf_starts(pf, pf->objects, pf->n_objects, f->slot_vaddr))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: slot is not a pointer variable of the "
                                    "patch", rec.sect, i);
        }
        return 0;
}

/* The width of a ulp_rels field of that type, 0 for an unknown type. */
static size_t rel_width(uint32_t type) {
        return type == ULP_REL_PC32 ? 4 : type == ULP_REL_64 ? 8 : 0;
}

static int read_rels(PatchFile *pf, PatchMeta *m) {
        const size_t sz = sizeof(struct ulp_meta_rel);
        Rec first, rec;
        size_t n;
        int r = pf_section(pf, ULP_SECTION_RELS, sz, &first, &n);
        if (r < 0 || n == 0)
                return r;
        if (!(m->rels = calloc(n, sizeof(PatchRel))))
                return -ENOMEM;
        m->n_rels = n;           /* zeroed: patchmeta_free() copes with a partial read */

        for (size_t i = 0; i < n; i++) {
                PatchRel *f = &m->rels[i];
                uint64_t addend;
                size_t width;
                rec_seek(&rec, &first, sz, i);
                f->pos = rec_u32(&rec, F(ulp_meta_rel, pos));
                f->type = rec_u32(&rec, F(ulp_meta_rel, type));
                memcpy(&addend, rec.bytes + F(ulp_meta_rel, addend), sizeof(addend));
                f->addend = (int64_t)addend;
                if ((r = rec_check_magic(pf, &rec)) < 0 ||
                    (r = rec_string(pf, &rec, F(ulp_meta_rel, object), "object", true, &f->object)) < 0 ||
                    (r = rec_string(pf, &rec, F(ulp_meta_rel, symbol), "symbol", true, &f->symbol)) < 0 ||
                    (r = rec_pointer(pf, &rec, F(ulp_meta_rel, where), "where", &f->where_vaddr)) < 0)
                        return r;
                if (!*f->symbol)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: empty symbol name", rec.sect, i);
                if (!(width = rel_width(f->type)))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: unknown type %u", rec.sect, i,
                                    f->type);
                /* The field is written before any new function runs, inside the image. */
                if (!pf_segment(pf, f->where_vaddr, width))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: the field lies outside the "
                                    "patch's file image", rec.sect, i);
        }
        return 0;
}

/* Checks and lower-cases a build-id pin. */
static int build_id_normalize(char *hex) {
        size_t len = strlen(hex);

        if (len == 0 || len % 2 != 0 || len > 2 * BUILD_ID_MAX)
                return -EBADMSG;
        for (char *p = hex; *p; p++) {
                if (!isxdigit((unsigned char)*p))
                        return -EBADMSG;
                *p = (char)tolower((unsigned char)*p);
        }
        return 0;
}

static int read_build_ids(PatchFile *pf, PatchMeta *m) {
        const size_t sz = sizeof(struct ulp_meta_build_id);
        Rec first, rec;
        size_t n;
        int r = pf_section(pf, ULP_SECTION_BUILD_IDS, sz, &first, &n);
        if (r < 0 || n == 0)
                return r;
        if (!(m->build_ids = calloc(n, sizeof(PatchBuildId))))
                return -ENOMEM;
        m->n_build_ids = n;           /* zeroed: patchmeta_free() copes with a partial read */

        for (size_t i = 0; i < n; i++) {
                PatchBuildId *b = &m->build_ids[i];
                rec_seek(&rec, &first, sz, i);
                if ((r = rec_check_magic(pf, &rec)) < 0 ||
                    (r = rec_string(pf, &rec, F(ulp_meta_build_id, object), "object", true, &b->object)) < 0 ||
                    (r = rec_string(pf, &rec, F(ulp_meta_build_id, build_id), "build-id", true, &b->hex)) < 0)
                        return r;
                if (build_id_normalize(b->hex) < 0)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: \"%s\" is not a hex build-id",
                                    rec.sect, i, b->hex);
        }
        return 0;
}

static int read_callbacks(PatchFile *pf, PatchMeta *m) {
        const size_t sz = sizeof(struct ulp_meta_callbacks);
        Rec first, rec;
        size_t n;
        int r = pf_section(pf, ULP_SECTION_CALLBACKS, sz, &first, &n);
        if (r < 0 || n == 0)
                return r;
        if (!(m->callbacks = calloc(n, sizeof(PatchCallbacks))))
                return -ENOMEM;
        m->n_callbacks = n;           /* zeroed: patchmeta_free() copes with a partial read */

        for (size_t i = 0; i < n; i++) {
                PatchCallbacks *c = &m->callbacks[i];
                rec_seek(&rec, &first, sz, i);
                if ((r = rec_check_magic(pf, &rec)) < 0 ||
                    (r = rec_string(pf, &rec, F(ulp_meta_callbacks, object), "object", true, &c->object)) < 0 ||
                    (r = rec_code(pf, &rec, F(ulp_meta_callbacks, pre_patch), "pre_patch", false,
                                  &c->pre_patch)) < 0 ||
                    (r = rec_code(pf, &rec, F(ulp_meta_callbacks, post_patch), "post_patch", false,
                                  &c->post_patch)) < 0 ||
                    (r = rec_code(pf, &rec, F(ulp_meta_callbacks, pre_unpatch), "pre_unpatch", false,
                                  &c->pre_unpatch)) < 0 ||
                    (r = rec_code(pf, &rec, F(ulp_meta_callbacks, post_unpatch), "post_unpatch", false,
                                  &c->post_unpatch)) < 0)
                        return r;
        }
        return 0;
}

static int read_replace(PatchFile *pf, PatchMeta *m) {
        const size_t sz = sizeof(struct ulp_meta_replace);
        Rec first, rec;
        size_t n;
        int r = pf_section(pf, ULP_SECTION_REPLACE, sz, &first, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                rec_seek(&rec, &first, sz, i);
                if ((r = rec_check_magic(pf, &rec)) < 0)
                        return r;
                if (rec_u32(&rec, F(ulp_meta_replace, replace)))
                        m->replace = true;
        }
        return 0;
}

/* The patch name from a file name: its basename without ".so". */
static char *name_from_hint(const char *hint) {
        const char *base = hint ? strrchr(hint, '/') : NULL;
        base = base ? base + 1 : hint && *hint ? hint : "patch";

        size_t len = strlen(base);
        if (len > 3 && strcmp(base + len - 3, ".so") == 0)
                len -= 3;
        return strndup(base, len);
}

/* Opens the ELF, from a sealed copy of fd, checks its layout and gathers what every
 * record reader needs: segments and relocations. */
static int patch_file_open(PatchFile *pf, int fd) {
        GElf_Ehdr eh;

        int r = patch_file_copy(fd, &pf->fd, pf->errbuf, pf->errlen);
        if (r < 0)
                return r;
        r = elf_open_fd(pf->fd, &pf->elf);
        if (r < 0)
                return fail(pf->errbuf, pf->errlen, r, "not an ELF file");
        if (!gelf_getehdr(pf->elf, &eh) || eh.e_machine != ARCH_ELF_MACHINE || eh.e_type != ET_DYN ||
            eh.e_ident[EI_DATA] != ARCH_ELF_DATA)
                return fail(pf->errbuf, pf->errlen, -ENOEXEC, "not an x86-64 shared object");
        pf->raw = (const unsigned char *)elf_rawfile(pf->elf, &pf->raw_size);
        if (!pf->raw)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "cannot read the file: %s", elf_errmsg(-1));
        if ((r = pf_check_sections(pf)) < 0 ||
            (r = pf_read_segments(pf)) < 0 ||
            (r = pf_check_section_placement(pf)) < 0 ||
            (r = pf_read_symbols(pf)) < 0)
                return r;
        return pf_read_relocs(pf);
}

/* A name that shows in logs, status lines and the control block (which holds
 * ULP_NAME_MAX bytes and a NUL): short, and printable so that it cannot forge lines; not
 * the runtime's, whose mapping is found by name. */
static int check_name(PatchFile *pf, const char *name, bool from_file) {
        const char *what = from_file ? "the patch name (from the file name)" : "the patch name";
        size_t len = strlen(name);

        if (len == 0)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s is empty", what);
        if (len > ULP_NAME_MAX)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s is %zu bytes long, at most %d are allowed", what, len,
                            ULP_NAME_MAX);
        for (size_t i = 0; i < len; i++)
                if (name[i] <= ' ' || name[i] > '~')
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s has a byte 0x%02x at %zu: only printable "
                                    "characters other than space are allowed", what,
                                    (unsigned char)name[i], i);
        /* revert takes a name or a file: an argument with a '/' or ending in
         * ".so" is a file (daemon/ulpctl-common.c), so such a name could never be named. */
        if (strchr(name, '/') || (len >= 3 && strcmp(name + len - 3, ".so") == 0))
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s \"%s\" %s: revert could not tell it from a "
                            "file name", what, name, strchr(name, '/') ? "has a '/'" : "ends in \".so\"");
        if (strcmp(name, PATCH_NAME_SHADOW_RUNTIME) == 0)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s \"%s\" is reserved for ulp's shadow-variable "
                            "runtime: ULP_PATCH_INFO must give the patch another name", what, name);
        return 0;
}

/* Object and symbol names are kept in fixed fields of the target's control block:
 * longer ones would be cut there and no longer match. */
static int check_lengths(PatchFile *pf, const PatchMeta *m) {
        for (size_t i = 0; i < m->n_funcs; i++) {
                if (strlen(m->funcs[i].object) > PATCH_OBJECT_MAX)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: object name longer than %d bytes",
                                    ULP_SECTION_FUNCS, i, PATCH_OBJECT_MAX);
                if (strlen(m->funcs[i].symbol) > PATCH_SYMBOL_MAX)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "%s[%zu]: symbol name longer than %d bytes",
                                    ULP_SECTION_FUNCS, i, PATCH_SYMBOL_MAX);
        }
        return 0;
}

int patchmeta_read(int fd, const char *name_hint, PatchMeta **ret, char *errbuf, size_t errlen) {
        _cleanup_(patch_file_done) PatchFile pf = { .fd = -1, .errbuf = errbuf, .errlen = errlen };
        _cleanup_(patchmeta_freep) PatchMeta *m = calloc(1, sizeof(PatchMeta));
        int r;

        if (!m)
                return -ENOMEM;
        if ((r = patch_file_open(&pf, fd)) < 0 ||
            (r = read_info(&pf, m)) < 0 ||
            (r = read_funcs(&pf, m)) < 0 ||
            (r = read_refs(&pf, m)) < 0 ||
            (r = read_rels(&pf, m)) < 0 ||
            (r = read_build_ids(&pf, m)) < 0 ||
            (r = read_callbacks(&pf, m)) < 0 ||
            (r = read_replace(&pf, m)) < 0)
                return r == -ENOMEM ? fail(pf.errbuf, pf.errlen, r, "out of memory") : r;
        if (m->n_funcs == 0)
                return fail(pf.errbuf, pf.errlen, -ENOMSG, "no ulp metadata (no %s record)", ULP_SECTION_FUNCS);

        r = check_lengths(&pf, m);
        if (r < 0)
                return r;
        if (m->name)
                r = check_name(&pf, m->name, false);
        else if (!(m->name = name_from_hint(name_hint)))
                return -ENOMEM;
        else
                r = check_name(&pf, m->name, true);
        if (r < 0)
                return r;
        if (!m->description && !(m->description = strdup("")))
                return -ENOMEM;
        r = elf_read_build_id(pf.elf, m->build_id, sizeof(m->build_id));
        m->build_id_len = r > 0 ? (size_t)r : 0;
        m->n_relr = pf.n_relr;
        *ret = TAKE_PTR(m);
        return 0;
}

void patchmeta_free(PatchMeta *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->n_funcs; i++) {
                free(m->funcs[i].object);
                free(m->funcs[i].symbol);
                free(m->funcs[i].new_name);
        }
        for (size_t i = 0; i < m->n_refs; i++) {
                free(m->refs[i].object);
                free(m->refs[i].symbol);
        }
        for (size_t i = 0; i < m->n_rels; i++) {
                free(m->rels[i].object);
                free(m->rels[i].symbol);
        }
        for (size_t i = 0; i < m->n_build_ids; i++) {
                free(m->build_ids[i].object);
                free(m->build_ids[i].hex);
        }
        for (size_t i = 0; i < m->n_callbacks; i++)
                free(m->callbacks[i].object);
        free(m->funcs);
        free(m->refs);
        free(m->rels);
        free(m->build_ids);
        free(m->callbacks);
        free(m->name);
        free(m->description);
        free(m);
}

const char *patchmeta_build_id_for(const PatchMeta *m, const char *object) {
        for (size_t i = 0; i < m->n_build_ids; i++)
                if (strcmp(m->build_ids[i].object, object ? object : "") == 0)
                        return m->build_ids[i].hex;
        return NULL;
}
