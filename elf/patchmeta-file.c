/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The patch file as an ELF file: see patchmeta-file.h. Every offset, size and index read
 * from the file is bounded by the file before it is used. */

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
#include "ulp/patch.h"

/* Why a patch's own IFUNCs are refused (docs/reach.md). */
#define SELF_IFUNC_WHY "its resolver, the patch's own code, would run in the target before the patch is recorded " \
        "(docs/reach.md)"

/* The PT_LOAD segment holding [vaddr, vaddr+len) in the file, or NULL. */
const GElf_Phdr *pf_segment(const PatchFile *pf, uint64_t vaddr, uint64_t len) {
        for (size_t i = 0; i < pf->n_loads; i++) {
                const GElf_Phdr *p = &pf->loads[i];
                if (vaddr >= p->p_vaddr && vaddr - p->p_vaddr <= p->p_filesz &&
                    len <= p->p_filesz - (vaddr - p->p_vaddr))
                        return p;
        }
        return NULL;
}

/* The file bytes at vaddr (len of them lie within one segment's file image), or NULL. */
const unsigned char *pf_bytes(const PatchFile *pf, uint64_t vaddr, uint64_t len) {
        const GElf_Phdr *p = pf_segment(pf, vaddr, len);

        if (!p)
                return NULL;
        return pf->raw + p->p_offset + (vaddr - p->p_vaddr);
}

/* Whether [vaddr, vaddr+len) lies in a writable segment (its file image or its .bss). */
bool pf_writable(const PatchFile *pf, uint64_t vaddr, uint64_t len) {
        for (size_t i = 0; i < pf->n_loads; i++) {
                const GElf_Phdr *p = &pf->loads[i];
                if ((p->p_flags & PF_W) && vaddr >= p->p_vaddr && vaddr - p->p_vaddr <= p->p_memsz &&
                    len <= p->p_memsz - (vaddr - p->p_vaddr))
                        return true;
        }
        return false;
}

/* Whether [vaddr, vaddr+len) lies inside one executable segment once loaded. */
static bool pf_in_code(const PatchFile *pf, uint64_t vaddr, uint64_t len) {
        for (size_t i = 0; i < pf->n_loads; i++) {
                const GElf_Phdr *p = &pf->loads[i];
                if ((p->p_flags & PF_X) && vaddr >= p->p_vaddr && vaddr - p->p_vaddr <= p->p_memsz &&
                    len <= p->p_memsz - (vaddr - p->p_vaddr))
                        return true;
        }
        return false;
}

/* Whether vaddr lies inside the patch's image once loaded (its end included: a pointer
 * one past an array is valid C). */
static bool pf_inside(const PatchFile *pf, uint64_t vaddr) {
        for (size_t i = 0; i < pf->n_loads; i++) {
                const GElf_Phdr *p = &pf->loads[i];
                if (vaddr >= p->p_vaddr && vaddr - p->p_vaddr <= p->p_memsz)
                        return true;
        }
        return false;
}

/* Refuses what the dynamic section asks for that the loader does not do (REL
 * relocations) and notes its packed relative relocations (DT_RELR), which must be the
 * section the loader applies (pf_check_relr). The table is read from the file bounded by
 * the segment, up to its DT_NULL. */
static int pf_check_dynamic(PatchFile *pf, const GElf_Phdr *ph) {
        if (ph->p_offset > pf->raw_size || ph->p_filesz > pf->raw_size - ph->p_offset)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "the dynamic segment lies beyond the end of the file");
        for (uint64_t off = 0; off + sizeof(Elf64_Dyn) <= ph->p_filesz; off += sizeof(Elf64_Dyn)) {
                Elf64_Dyn d;
                memcpy(&d, pf->raw + ph->p_offset + off, sizeof(d));
                if (d.d_tag == DT_NULL)
                        break;
                if (d.d_tag == DT_RELR)
                        pf->dt_relr = d.d_un.d_ptr;
                if (d.d_tag == DT_RELRSZ)
                        pf->dt_relrsz = d.d_un.d_val;
                if (d.d_tag == DT_RELRENT && d.d_un.d_val != RELR_ENTSIZE)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "DT_RELRENT is %" PRIu64 ", not %d",
                                        (uint64_t)d.d_un.d_val, RELR_ENTSIZE);
                if (d.d_tag == DT_REL || d.d_tag == DT_RELSZ)
                        return fail(pf->errbuf, pf->errlen, -ENOTSUP, "has REL relocations, which ulp does not "
                                    "support (only RELA)");
        }
        return 0;
}

static bool pf_printable(const char *s) {
        for (; *s; s++)
                if (*s <= ' ' || *s > '~')
                        return false;
        return true;
}

/* Reads the PT_LOAD headers and checks that the loader can map them as they are: each
 * inside the file, no larger in the file than in memory (the loader would map file
 * bytes over what follows), mappable (offset and address agree modulo the page), in
 * address order on pages of their own, with a sane alignment and span. A PT_TLS
 * segment is refused: the patch would need a TLS block in every thread. */
int pf_read_segments(PatchFile *pf) {
        size_t nph;

        if (elf_getphdrnum(pf->elf, &nph) < 0)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "cannot read program headers: %s", elf_errmsg(-1));
        pf->loads = calloc(PATCH_MAX_LOADS, sizeof(GElf_Phdr));
        if (!pf->loads)
                return -ENOMEM;
        for (size_t i = 0; i < nph; i++) {
                GElf_Phdr ph;
                if (!gelf_getphdr(pf->elf, (int)i, &ph))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "bad program header %zu", i);
                if (ph.p_type == PT_TLS)
                        return fail(pf->errbuf, pf->errlen, -ENOTSUP, "uses thread-local storage (PT_TLS), which ulp "
                                    "does not support");
                if (ph.p_type == PT_DYNAMIC) {
                        int r = pf_check_dynamic(pf, &ph);
                        if (r < 0)
                                return r;
                }
                if (ph.p_type != PT_LOAD)
                        continue;
                if (pf->n_loads == PATCH_MAX_LOADS)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "more than %d PT_LOAD segments", PATCH_MAX_LOADS);
                if (ph.p_offset > pf->raw_size || ph.p_filesz > pf->raw_size - ph.p_offset)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "segment %zu lies beyond the end of the file", i);
                if (ph.p_filesz > ph.p_memsz)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "segment %zu is larger in the file (%" PRIu64
                                    " bytes) than in memory (%" PRIu64 ")", i,
                                    (uint64_t)ph.p_filesz, (uint64_t)ph.p_memsz);
                /* Only data has a zero-filled tail (.bss); code or constants cut short
                 * would run or read as zeros. */
                if (ph.p_filesz != ph.p_memsz && !(ph.p_flags & PF_W))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "segment %zu is not writable but larger in memory "
                                    "than in the file", i);
                if (ph.p_align > PATCH_SPAN_MAX || (ph.p_align & (ph.p_align - 1)) != 0)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "segment %zu has an absurd alignment 0x%" PRIx64,
                                    i, (uint64_t)ph.p_align);
                if ((ph.p_vaddr - ph.p_offset) % PATCH_PAGE != 0)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "segment %zu cannot be mapped: its offset and "
                                    "address differ within a page", i);
                if (ph.p_vaddr > PATCH_SPAN_MAX || ph.p_memsz > PATCH_SPAN_MAX)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "segment %zu spans more than %llu MiB", i,
                                    PATCH_SPAN_MAX >> 20);
                if (pf->n_loads > 0) {
                        const GElf_Phdr *prev = &pf->loads[pf->n_loads - 1];
                        if (ALIGN_DOWN(ph.p_vaddr, PATCH_PAGE) <
                            ALIGN_UP(prev->p_vaddr + prev->p_memsz, PATCH_PAGE))
                                return fail(pf->errbuf, pf->errlen, -EBADMSG, "segment %zu overlaps the one before it "
                                            "or is out of order", i);
                }
                pf->loads[pf->n_loads++] = ph;
        }
        if (pf->n_loads == 0)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "no PT_LOAD segment");
        const GElf_Phdr *last = &pf->loads[pf->n_loads - 1];
        if (last->p_vaddr + last->p_memsz - ALIGN_DOWN(pf->loads[0].p_vaddr, PATCH_PAGE) > PATCH_SPAN_MAX)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "the segments span more than %llu MiB", PATCH_SPAN_MAX >> 20);
        return 0;
}

static int pf_add_reloc(PatchFile *pf, uint64_t offset, uint64_t value, bool resolved) {
        if (GROW_FOR_ONE(pf->relocs, pf->n_relocs, pf->alloc_relocs, 64) < 0)
                return -ENOMEM;
        pf->relocs[pf->n_relocs++] = (Reloc) { offset, value, resolved };
        return 0;
}

/* The symbol a relocation of section sh names, checked: the index inside the symbol
 * table sh links to, its name inside that table's string table. */
static int pf_reloc_symbol(PatchFile *pf, const GElf_Shdr *sh, size_t i, uint32_t symidx,
                           GElf_Sym *ret, const char **ret_name) {
        Elf_Scn *symscn = elf_getscn(pf->elf, sh->sh_link);
        Elf_Data *syms;
        GElf_Shdr ssh;

        if (!symscn || !gelf_getshdr(symscn, &ssh) ||
            (ssh.sh_type != SHT_DYNSYM && ssh.sh_type != SHT_SYMTAB) ||
            ssh.sh_entsize != sizeof(Elf64_Sym) || !(syms = elf_getdata(symscn, NULL)))
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "relocation %zu: no symbol table", i);
        if (symidx >= ssh.sh_size / ssh.sh_entsize || !gelf_getsym(syms, (int)symidx, ret))
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "relocation %zu: symbol index %u out of range", i, symidx);
        *ret_name = elf_strptr(pf->elf, ssh.sh_link, ret->st_name);
        if (!*ret_name)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "relocation %zu: symbol %u has its name out of bounds",
                            i, symidx);
        /* The loader names it in its messages. */
        for (const char *p = *ret_name; *p; p++)
                if (*p <= ' ' || *p > '~')
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "relocation %zu: symbol %u has a non-printable "
                                    "name", i, symidx);
        return 0;
}

/* Checks every relocation of one SHT_RELA section the way the loader will apply it (a
 * kind it links, a word inside the patch's writable segments, a sane symbol) and
 * records the pointer-sized ones: RELATIVE, and 64 or GLOB_DAT against a symbol
 * (resolved only when the patch defines it). */
static int pf_read_rela(PatchFile *pf, Elf_Scn *scn, const GElf_Shdr *sh) {
        Elf_Data *data = elf_getdata(scn, NULL);
        int r;

        if (sh->sh_entsize != sizeof(Elf64_Rela) || sh->sh_size % sizeof(Elf64_Rela) != 0 ||
            !data || data->d_size != sh->sh_size)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "a relocation section is malformed");
        for (size_t i = 0; i < sh->sh_size / sh->sh_entsize; i++) {
                GElf_Rela rela;
                GElf_Sym sym;
                const char *name = NULL;
                uint32_t type;
                if (!gelf_getrela(data, (int)i, &rela))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "bad relocation %zu", i);

                type = (uint32_t)GELF_R_TYPE(rela.r_info);
                switch (type) {
                case R_X86_64_NONE:
                        continue;
                case R_X86_64_RELATIVE:
                case R_X86_64_64:
                case R_X86_64_GLOB_DAT:
                case R_X86_64_JUMP_SLOT:
                        break;
                case R_X86_64_DTPMOD64:
                case R_X86_64_DTPOFF64:
                case R_X86_64_TPOFF64:
                case R_X86_64_TLSDESC:
                        return fail(pf->errbuf, pf->errlen, -ENOTSUP, "uses thread-local storage, which ulp does not "
                                    "support");
                case R_X86_64_IRELATIVE:
                        return fail(pf->errbuf, pf->errlen, -ENOTSUP, "defines an IFUNC (IRELATIVE relocation %zu), "
                                    "which ulp does not support: " SELF_IFUNC_WHY, i);
                default:
                        return fail(pf->errbuf, pf->errlen, -ENOTSUP, "has relocation type %u (relocation %zu), which ulp "
                                    "does not support", type, i);
                }
                /* The loader writes 8 bytes at the load bias plus r_offset: anywhere else
                 * than the patch's own data would be a write into the target. */
                if (!pf_writable(pf, rela.r_offset, sizeof(uint64_t)))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "relocation %zu writes at 0x%" PRIx64
                                    ", outside the patch's writable segments", i,
                                    (uint64_t)rela.r_offset);
                if (type == R_X86_64_RELATIVE) {
                        /* A linker makes these for addresses inside the object, with no
                         * symbol; anything else would hand the patch a wild pointer. */
                        if (GELF_R_SYM(rela.r_info) != 0 || !pf_inside(pf, (uint64_t)rela.r_addend))
                                return fail(pf->errbuf, pf->errlen, -EBADMSG, "relocation %zu points outside the patch", i);
                        r = pf_add_reloc(pf, rela.r_offset, (uint64_t)rela.r_addend, true);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (GELF_R_SYM(rela.r_info) == 0)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "relocation %zu of type %u has no symbol", i, type);
                r = pf_reloc_symbol(pf, sh, i, (uint32_t)GELF_R_SYM(rela.r_info), &sym, &name);
                if (r < 0)
                        return r;
                /* To a symbol the patch defines: inside it, whatever the type (the
                 * loader writes S + A for R_X86_64_64, S for GLOB_DAT and JUMP_SLOT). */
                uint64_t to = sym.st_value + (type == R_X86_64_64 ? (uint64_t)rela.r_addend : 0);
                if (sym.st_shndx != SHN_UNDEF && !pf_inside(pf, to))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "relocation %zu points outside the patch", i);
                if (GELF_ST_TYPE(sym.st_info) == STT_GNU_IFUNC)
                        return fail(pf->errbuf, pf->errlen, -ENOTSUP, "defines an IFUNC (%s), which ulp does not "
                                    "support: " SELF_IFUNC_WHY, name);
                if (GELF_ST_TYPE(sym.st_info) == STT_TLS)
                        return fail(pf->errbuf, pf->errlen, -ENOTSUP, "uses thread-local storage (%s), which ulp does "
                                    "not support", name);
                if (type == R_X86_64_JUMP_SLOT)
                        continue;
                r = pf_add_reloc(pf, rela.r_offset, to, sym.st_shndx != SHN_UNDEF);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int reloc_cmp(const void *a, const void *b) {
        const Reloc *x = a, *y = b;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Checks that every section header lies inside the file and links to a section that
 * exists, and that string tables end with a NUL; refuses relocations the loader would
 * not apply (REL), and more than one allocated SHT_RELR section. */
int pf_check_sections(PatchFile *pf) {
        size_t shnum;

        if (elf_getshdrnum(pf->elf, &shnum) < 0)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "cannot read section headers: %s", elf_errmsg(-1));
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(pf->elf, scn)); ) {
                size_t i = elf_ndxscn(scn);
                GElf_Shdr sh;
                if (!gelf_getshdr(scn, &sh))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "bad section header %zu", i);
                if (sh.sh_type == SHT_RELR && (sh.sh_flags & SHF_ALLOC)) {
                        if (pf->relr_size)
                                return fail(pf->errbuf, pf->errlen, -EBADMSG, "more than one RELR section");
                        if (sh.sh_size == 0 || sh.sh_size % RELR_ENTSIZE != 0 || sh.sh_entsize != RELR_ENTSIZE)
                                return fail(pf->errbuf, pf->errlen, -EBADMSG, "the RELR section is malformed");
                        pf->relr_addr = sh.sh_addr;
                        pf->relr_size = sh.sh_size;
                }
                if (sh.sh_type == SHT_REL && (sh.sh_flags & SHF_ALLOC))
                        return fail(pf->errbuf, pf->errlen, -ENOTSUP, "has REL relocations, which ulp does not "
                                    "support (only RELA)");
                if (sh.sh_type != SHT_NOBITS && sh.sh_type != SHT_NULL &&
                    (sh.sh_offset > pf->raw_size || sh.sh_size > pf->raw_size - sh.sh_offset))
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "section %zu lies beyond the end of the file", i);
                if (sh.sh_link >= shnum)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "section %zu links to section %u, which does not "
                                    "exist", i, sh.sh_link);
                if (sh.sh_type == SHT_STRTAB && sh.sh_size > 0 &&
                    pf->raw[sh.sh_offset + sh.sh_size - 1] != 0)
                        return fail(pf->errbuf, pf->errlen, -EBADMSG, "string table %zu does not end with a NUL", i);
        }
        return 0;
}

/* Checks that every allocated section with contents lies in a PT_LOAD, at the file
 * offset that segment maps at its address. Section and segment headers describe the
 * same bytes twice; the loader maps by segment and everything else here reads by
 * section or symbol: a segment moved in the file would run other bytes as the code
 * that was checked. */
int pf_check_section_placement(PatchFile *pf) {
        size_t shstrndx = 0;

        (void)elf_getshdrstrndx(pf->elf, &shstrndx);
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(pf->elf, scn)); ) {
                const GElf_Phdr *seg;
                const char *name;
                GElf_Shdr sh;
                if (!gelf_getshdr(scn, &sh) || !(sh.sh_flags & SHF_ALLOC) || sh.sh_type == SHT_NOBITS ||
                    sh.sh_size == 0)
                        continue;
                seg = pf_segment(pf, sh.sh_addr, sh.sh_size);
                if (seg && sh.sh_offset == seg->p_offset + (sh.sh_addr - seg->p_vaddr))
                        continue;
                name = elf_strptr(pf->elf, shstrndx, sh.sh_name);
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "section %zu (%s) is not where the segments map it",
                            elf_ndxscn(scn), name && pf_printable(name) ? name : "?");
        }
        return 0;
}

/* One packed relative relocation: a word of the patch's writable file image, holding
 * an address inside the patch (the implicit addend), as for RELATIVE in RELA. */
static int pf_add_relr(uint64_t vaddr, void *userdata) {
        PatchFile *pf = userdata;
        const unsigned char *b = pf_bytes(pf, vaddr, sizeof(uint64_t));
        uint64_t v;

        if (!b || !pf_writable(pf, vaddr, sizeof(uint64_t)))
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "RELR relocation %zu writes at 0x%" PRIx64
                                ", outside the patch's writable segments", pf->n_relr, vaddr);
        memcpy(&v, b, sizeof(v));
        if (!pf_inside(pf, v))
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "RELR relocation %zu points outside the patch", pf->n_relr);
        pf->n_relr++;
        return pf_add_reloc(pf, vaddr, v, true);
}

/* The allocated SHT_RELR section, as the loader applies it; DT_RELR, when the dynamic
 * section has it, must name that very table, so that nothing is declared that the
 * loader would leave unapplied. The words are read from the file, whose bounds
 * pf_check_sections checked. */
static int pf_read_relr(PatchFile *pf) {
        _cleanup_free_ uint64_t *words = NULL;
        const GElf_Phdr *seg;
        int r;

        if ((pf->dt_relr || pf->dt_relrsz) && (pf->dt_relr != pf->relr_addr || pf->dt_relrsz != pf->relr_size))
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "DT_RELR (0x%" PRIx64 ", %" PRIu64 " bytes) is not the RELR "
                                "section", pf->dt_relr, pf->dt_relrsz);
        if (!pf->relr_size)
                return 0;
        seg = pf_segment(pf, pf->relr_addr, pf->relr_size);
        if (!seg)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "the RELR section is outside the patch's segments");
        words = malloc(pf->relr_size);
        if (!words)
                return -ENOMEM;
        memcpy(words, pf->raw + seg->p_offset + (pf->relr_addr - seg->p_vaddr), pf->relr_size);
        r = relr_foreach(words, pf->relr_size / RELR_ENTSIZE, pf_add_relr, pf);
        if (r == -EDOM)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "the RELR section is malformed (a bitmap first, or addresses "
                                "out of order)");
        return r;
}

/* Collects the dynamic relocations of the patch, sorted by the address they patch. */
int pf_read_relocs(PatchFile *pf) {
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(pf->elf, scn)); ) {
                GElf_Shdr sh;
                int r = 0;
                if (!gelf_getshdr(scn, &sh) || !(sh.sh_flags & SHF_ALLOC))
                        continue;
                if (sh.sh_type == SHT_RELA)
                        r = pf_read_rela(pf, scn, &sh);
                if (r < 0)
                        return r;
        }
        int r = pf_read_relr(pf);
        if (r < 0)
                return r;
        if (pf->n_relocs > 0)
                qsort(pf->relocs, pf->n_relocs, sizeof(Reloc), reloc_cmp);
        return 0;
}

static int u64_cmp(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* The section the patch.h macros put a record symbol (ulp__KIND_N) in, or NULL. */
static const char *record_section(const char *sym) {
        static const struct { const char *prefix, *sect; } kinds[] = {
                { "ulp__info_", ULP_SECTION_INFO },      { "ulp__func_", ULP_SECTION_FUNCS },
                { "ulp__ref_", ULP_SECTION_REFS },       { "ulp__bid_", ULP_SECTION_BUILD_IDS },
                { "ulp__cb_", ULP_SECTION_CALLBACKS },   { "ulp__replace_", ULP_SECTION_REPLACE },
        };
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++)
                if (strncmp(sym, kinds[i].prefix, strlen(kinds[i].prefix)) == 0)
                        return kinds[i].sect;
        return NULL;
}

static bool pf_is_record_symbol(PatchFile *pf, const GElf_Shdr *symsh, const GElf_Sym *sym) {
        const char *name = elf_strptr(pf->elf, symsh->sh_link, sym->st_name);
        return name && record_section(name);
}

/* A record symbol must lie in its section: a record section renamed or moved would
 * otherwise be skipped, and the patch run without the ULP_REF it relies on. */
static int pf_check_record_symbol(PatchFile *pf, const GElf_Shdr *symsh, const GElf_Sym *sym) {
        const char *name = elf_strptr(pf->elf, symsh->sh_link, sym->st_name), *want, *have = NULL;
        size_t shstrndx;
        GElf_Shdr sh;
        Elf_Scn *scn;

        if (!name || !(want = record_section(name)))
                return 0;
        if (elf_getshdrstrndx(pf->elf, &shstrndx) >= 0 && (scn = elf_getscn(pf->elf, sym->st_shndx)) &&
            gelf_getshdr(scn, &sh))
                have = elf_strptr(pf->elf, shstrndx, sh.sh_name);
        if (!have || strcmp(have, want) != 0 || sym->st_value < sh.sh_addr ||
            sym->st_value - sh.sh_addr >= sh.sh_size)
                return fail(pf->errbuf, pf->errlen, -EBADMSG, "a record of the patch lies outside section %s", want);
        return 0;
}

/* Gathers where the patch's functions and variables start, from its symbol tables:
 * a new function, a callback or a ULP_REF slot that points anywhere else was not made
 * by the patch macros (a stray jump into the middle of code would run in the target).
 * At most one entry per symbol: bounded by the file size. */
int pf_read_symbols(PatchFile *pf) {
        unsigned table = SHT_DYNSYM;
        size_t alloc = 0;

        /* The full table when there is one: relocations name .dynsym entries, and a
         * changed .dynsym entry must not vouch for itself. */
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(pf->elf, scn)); ) {
                GElf_Shdr sh;
                if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_SYMTAB)
                        table = SHT_SYMTAB;
        }
        pf->have_symtab = table == SHT_SYMTAB;
        for (int pass = 0; pass < 2; pass++) {
                for (Elf_Scn *scn = NULL; (scn = elf_nextscn(pf->elf, scn)); ) {
                        GElf_Shdr sh;
                        Elf_Data *d;
                        if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) ||
                            (sh.sh_type != table && pass == 1))
                                continue;
                        if (sh.sh_entsize != sizeof(Elf64_Sym) || !(d = elf_getdata(scn, NULL)) ||
                            d->d_size != sh.sh_size)
                                return fail(pf->errbuf, pf->errlen, -EBADMSG, "a symbol table is malformed");
                        for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
                                GElf_Sym sym;
                                if (!gelf_getsym(d, (int)i, &sym) || sym.st_shndx == SHN_UNDEF ||
                                    sym.st_shndx >= SHN_LORESERVE)
                                        continue;
                                if (pass == 0) {
                                        int r = sh.sh_type == table ? pf_check_record_symbol(pf, &sh, &sym) : 0;
                                        if (r < 0)
                                                return r;
                                        /* Its size becomes the range the stack check and the
                                         * control block's record give the new function, read
                                         * from whichever table names it first: both tables'. */
                                        if (GELF_ST_TYPE(sym.st_info) == STT_FUNC &&
                                            !pf_in_code(pf, sym.st_value, sym.st_size))
                                                return fail(pf->errbuf, pf->errlen, -EBADMSG, "function symbol at "
                                                            "0x%" PRIx64 ": its %" PRIu64 " bytes run past the "
                                                            "patch's code", (uint64_t)sym.st_value,
                                                            (uint64_t)sym.st_size);
                                        alloc += sh.sh_type == table;
                                        continue;
                                }
                                if (GELF_ST_TYPE(sym.st_info) == STT_FUNC)
                                        pf->funcs[pf->n_funcs++] = sym.st_value;
                                else if (GELF_ST_TYPE(sym.st_info) == STT_OBJECT && sym.st_size == sizeof(void *) &&
                                         !pf_is_record_symbol(pf, &sh, &sym))
                                        pf->objects[pf->n_objects++] = sym.st_value;
                        }
                }
                if (pass == 0 && (!(pf->funcs = calloc(alloc + 1, sizeof(uint64_t))) ||
                                  !(pf->objects = calloc(alloc + 1, sizeof(uint64_t)))))
                        return -ENOMEM;
        }
        qsort(pf->funcs, pf->n_funcs, sizeof(uint64_t), u64_cmp);
        qsort(pf->objects, pf->n_objects, sizeof(uint64_t), u64_cmp);
        return 0;
}

/* Whether vaddr starts one of v; always true for a stripped patch, whose static
 * functions and variables have no symbol left to check against. */
bool pf_starts(const PatchFile *pf, const uint64_t *v, size_t n, uint64_t vaddr) {
        if (!pf->have_symtab)
                return true;
        return n > 0 && bsearch(&vaddr, v, n, sizeof(uint64_t), u64_cmp) != NULL;
}

const Reloc *pf_find_reloc(const PatchFile *pf, uint64_t vaddr) {
        Reloc key = { .offset = vaddr };
        if (pf->n_relocs == 0)   /* relocs is NULL then, which bsearch() must not get */
                return NULL;
        return bsearch(&key, pf->relocs, pf->n_relocs, sizeof(Reloc), reloc_cmp);
}


