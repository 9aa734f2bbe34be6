/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The running program's binary as ulp-build reads it (ulp-build-diff.c): its symbols
 * (with the source file of each local), build-id, soname, and the bytes of its
 * functions, against which the clean build is checked. */

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

BinSym *bsyms;
size_t n_bsyms;
char bin_object[256];
char bin_build_id[2 * 64 + 1];
static Elf *bin_elf;

static void bin_read_symtab(Elf_Scn *scn, const GElf_Shdr *sh, bool dyn) {
        Elf_Data *d = elf_getdata(scn, NULL);
        size_t n = d && sh->sh_entsize ? d->d_size / sh->sh_entsize : 0;
        const char *file = "";

        if (!n)
                return;
        bsyms = realloc(bsyms, (n_bsyms + n) * sizeof(*bsyms));
        if (!bsyms)
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
                BinSym *b = &bsyms[n_bsyms];
                b->name = strndup(nm, strcspn(nm, "@"));
                if (!b->name)
                        die("out of memory");
                n_bsyms++;
                b->local = GELF_ST_BIND(y.st_info) == STB_LOCAL;
                b->file = b->local && !dyn ? file : "";
                b->func = GELF_ST_TYPE(y.st_info) == STT_FUNC || GELF_ST_TYPE(y.st_info) == STT_GNU_IFUNC;
                b->value = y.st_value;
                b->size = y.st_size;
        }
}

static void bin_read_build_id(Elf_Scn *scn) {
        Elf_Data *d = elf_getdata(scn, NULL);
        size_t off = 0, noff, doff;
        GElf_Nhdr nh;

        while (d && (off = gelf_getnote(d, off, &nh, &noff, &doff)) > 0)
                if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
                    memcmp((char *)d->d_buf + noff, "GNU", 4) == 0 && nh.n_descsz <= 64)
                        for (size_t i = 0; i < nh.n_descsz; i++)
                                sprintf(bin_build_id + 2 * i, "%02x", ((unsigned char *)d->d_buf)[doff + i]);
}

static void bin_read_soname(Elf_Scn *scn, const GElf_Shdr *sh) {
        Elf_Data *d = elf_getdata(scn, NULL);

        for (size_t i = 0; d && sh->sh_entsize && i < d->d_size / sh->sh_entsize; i++) {
                GElf_Dyn dy;
                const char *so;
                if (gelf_getdyn(d, (int)i, &dy) && dy.d_tag == DT_SONAME &&
                    (so = elf_strptr(bin_elf, sh->sh_link, dy.d_un.d_val)))
                        snprintf(bin_object, sizeof(bin_object), "%s", so);
        }
}

/* Whether e (ET_DYN) is a library: a PIE executable has an interpreter, a library none. */
static bool is_library(Elf *e) {
        size_t nph;

        if (elf_getphdrnum(e, &nph) < 0)
                return true;
        for (size_t i = 0; i < nph; i++) {
                GElf_Phdr ph;
                if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_INTERP)
                        return false;
        }
        return true;
}

/* See ulp-build-diff.h. */
int bin_load(Elf *e, const char *path, char *err, size_t errlen) {
        GElf_Ehdr eh;
        bool symtab = false, is_lib;

        bin_close();
        bin_elf = e;
        if (!e || elf_kind(e) != ELF_K_ELF || gelf_getclass(e) != ELFCLASS64 || !gelf_getehdr(e, &eh) ||
            eh.e_machine != EM_X86_64 || (eh.e_type != ET_EXEC && eh.e_type != ET_DYN))
                return fail(err, errlen, -ENOEXEC, "%s is not an x86-64 executable or shared library", path);
        if (eh.e_type == ET_EXEC)
                return fail(err, errlen, -ENOTSUP, "%s is not position-independent (built without -fPIE): a patch "
                            "cannot hold the 32-bit absolute addresses its code uses; rebuild it with -fPIE -pie",
                            path);
        is_lib = is_library(e);
        Elf_Scn *scn = NULL;
        while ((scn = elf_nextscn(e, scn))) {
                GElf_Shdr sh;
                if (!gelf_getshdr(scn, &sh))
                        continue;
                if (sh.sh_type == SHT_SYMTAB) {
                        bin_read_symtab(scn, &sh, false);
                        symtab = true;
                } else if (sh.sh_type == SHT_DYNSYM) {
                        bin_read_symtab(scn, &sh, true);
                } else if (sh.sh_type == SHT_NOTE) {
                        bin_read_build_id(scn);
                } else if (sh.sh_type == SHT_DYNAMIC && is_lib) {
                        bin_read_soname(scn, &sh);
                }
        }
        if (!symtab)
                return fail(err, errlen, -ENOENT, "%s has no symbol table (.symtab): give the unstripped binary", path);
        if (is_lib && !bin_object[0]) {
                const char *base = strrchr(path, '/');
                snprintf(bin_object, sizeof(bin_object), "%s", base ? base + 1 : path);
        }
        return 0;
}

void bin_open(const char *path) {
        char err[512];
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                die("cannot open %s: %s", path, strerror(errno));
        if (bin_load(elf_begin(fd, ELF_C_READ, NULL), path, err, sizeof(err)) < 0)
                refuse("%s", err);
}

/* See ulp-build-diff.h. */
void bin_close(void) {
        for (size_t i = 0; i < n_bsyms; i++)
                free(bsyms[i].name);
        free(bsyms);
        bsyms = NULL;
        n_bsyms = 0;
        bin_object[0] = bin_build_id[0] = 0;
        if (bin_elf)
                elf_end(bin_elf);
        bin_elf = NULL;
}

/* Finds the symbol of the program that name (defined in file, a local when local) is,
 * and its position for symtab_lookup(): 0 when the name alone finds it, else its rank
 * among the locals of that name. Returns the entry or NULL. */
const BinSym *bin_lookup(const char *name, const char *file, bool local, unsigned *pos) {
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
uint64_t bin_differs(const Obj *o, size_t sec, const BinSym *bs) {
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