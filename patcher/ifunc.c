/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* IFUNC symbols resolved as the target's dynamic linker resolved them: see ifunc.h. */

#include <gelf.h>
#include <stdio.h>
#include <string.h>

#include "common/errno-clause.h"
#include "common/errfmt.h"
#include "common/macro.h"
#include "patcher/ifunc.h"

/* Whether addr (runtime) lies in an executable PT_LOAD of module m, whose ELF is e. */
static bool in_code(Elf *e, const Module *m, uint64_t addr) {
        size_t n;

        if (addr < m->bias || elf_getphdrnum(e, &n) < 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                GElf_Phdr ph;
                if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X) &&
                    addr - m->bias >= ph.p_vaddr && addr - m->bias - ph.p_vaddr < ph.p_memsz)
                        return true;
        }
        return false;
}

typedef struct Want {
        Target *t;
        const Module *def;
        Elf *def_elf;
        const char *name;
        uint64_t resolver;       /* the symbol's value: IRELATIVE addend in def */
        uint64_t found;
} Want;

/* Whether relocation rel of module m (ELF e, section sh) is a slot of the wanted symbol. */
static bool is_slot(Elf *e, const GElf_Shdr *sh, const GElf_Rela *rel, const Module *m, const Want *w) {
        uint32_t type = (uint32_t)GELF_R_TYPE(rel->r_info);
        Elf_Scn *symscn;
        Elf_Data *d;
        GElf_Shdr ssh;
        GElf_Sym sym;
        const char *name;

        if (type == R_X86_64_IRELATIVE)
                return m == w->def && (uint64_t)rel->r_addend == w->resolver;
        if (type != R_X86_64_GLOB_DAT && type != R_X86_64_JUMP_SLOT && type != R_X86_64_64)
                return false;
        if (GELF_R_SYM(rel->r_info) == 0 || !(symscn = elf_getscn(e, sh->sh_link)) ||
            !gelf_getshdr(symscn, &ssh) || !(d = elf_getdata(symscn, NULL)) ||
            !gelf_getsym(d, (int)GELF_R_SYM(rel->r_info), &sym) || sym.st_shndx != SHN_UNDEF)
                return false;
        name = elf_strptr(e, ssh.sh_link, sym.st_name);
        return name && strcmp(name, w->name) == 0 && (type != R_X86_64_64 || rel->r_addend == 0);
}

/* Looks through the allocated RELA sections of module m for a slot holding the chosen
 * implementation. 1 found (w->found), 0 not there. */
static int search_module(Elf *e, const Module *m, Want *w) {
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn)); ) {
                GElf_Shdr sh;
                Elf_Data *d;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_RELA || !(sh.sh_flags & SHF_ALLOC) ||
                    sh.sh_entsize != sizeof(Elf64_Rela) || !(d = elf_getdata(scn, NULL)))
                        continue;
                for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
                        GElf_Rela rel;
                        uint64_t v;
                        if (!gelf_getrela(d, (int)i, &rel) || !is_slot(e, &sh, &rel, m, w))
                                continue;
                        /* The slot as the target holds it now: anything but code of
                         * the defining object (a lazy PLT entry, garbage) is passed over. */
                        if (target_read(w->t, m->bias + rel.r_offset, &v, sizeof(v)) < 0)
                                continue;
                        if (in_code(w->def_elf, w->def, v)) {
                                w->found = v;
                                return 1;
                        }
                }
        }
        return 0;
}

int ifunc_chosen(Target *t, SymResolver *res, size_t def_idx, const char *name, const Symbol *sym,
                 uint64_t *ret) {
        Want w = { .t = t, .def = &res->mods->v[def_idx], .name = name, .resolver = sym->value };
        SymTab *st;
        int r = resolver_symtab(res, def_idx, &st);

        if (r < 0)
                return r;
        w.def_elf = symtab_elf(st);
        /* The defining object first: its IRELATIVE slots are filled at startup. */
        for (size_t k = 0; k <= res->mods->n; k++) {
                size_t i = k == 0 ? def_idx : k - 1;
                if ((k > 0 && i == def_idx) || res->mods->v[i].is_patch || resolver_symtab(res, i, &st) < 0)
                        continue;
                if (search_module(symtab_elf(st), &res->mods->v[i], &w) > 0) {
                        *ret = w.found;
                        return 0;
                }
        }
        return -ENOENT;
}

int ifunc_resolve(Target *t, SymResolver *res, size_t def_idx, const char *name, const Symbol *sym,
                  uint64_t *ret, char *err, size_t errlen) {
        const Module *def = &res->mods->v[def_idx];
        uint64_t resolver = sym->value + def->bias, v = 0;
        SymTab *st;
        int r = ifunc_chosen(t, res, def_idx, name, sym, ret);

        if (r != -ENOENT)
                return r < 0 ? fail(err, errlen, r, "cannot read the symbols of %s: %s", def->path,
                                    errno_clause(r)) : 0;
        if (!res->run_resolver)
                return fail(err, errlen, -EAGAIN, "the resolver of IFUNC %s in %s must run in the target",
                            name, def->path);
        r = res->run_resolver(res->userdata, resolver, &v);
        if (r == -ETIMEDOUT)
                return fail(err, errlen, -ETIME, "the resolver of IFUNC %s in %s did not return within the callback "
                            "deadline: it runs on in the thread it was given; nothing changed", name, def->path);
        if (r < 0)
                return fail(err, errlen, r, "the resolver of IFUNC %s in %s could not run in the target: %s",
                            name, def->path, process_errno_clause(r));
        r = resolver_symtab(res, def_idx, &st);
        if (r < 0)
                return fail(err, errlen, r, "cannot read the symbols of %s: %s", def->path, errno_clause(r));
        /* Whatever it returned is the target's word: used only as code of its object. */
        if (!in_code(symtab_elf(st), def, v))
                return fail(err, errlen, -ERANGE, "the resolver of IFUNC %s returned %#llx, not in the code "
                            "of %s: not used", name, (unsigned long long)v, def->path);
        *ret = v;
        return 0;
}
