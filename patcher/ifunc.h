/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The implementation the target's dynamic linker chose for an IFUNC symbol, read back
 * from a GOT slot it filled (docs/reach.md): the defining object's own IRELATIVE slots
 * (glibc's internal calls), then any object's slot bound to the symbol by name (GLOB_DAT,
 * JUMP_SLOT once bound). A value counts only when it points into code of the defining
 * object; a lazy slot still pointing at its PLT does not. When no slot shows it, the
 * resolver is run in the target on a borrowed thread (SymResolver.run_resolver), and
 * what it returns is held to the same rule.
 */

#include "elf/symtab.h"
#include "patcher/loader.h"
#include "patcher/target.h"

/* name is defined as the IFUNC sym (its resolver at sym->value) by module def_idx of
 * res. Returns 0 with the chosen implementation's runtime address, or -ENOENT when no
 * slot holds it yet. */
int ifunc_chosen(Target *t, SymResolver *res, size_t def_idx, const char *name, const Symbol *sym,
                 uint64_t *ret);

/* What name (the IFUNC sym of module def_idx) stands for: ifunc_chosen(), else the
 * resolver run in the target. -EAGAIN when it would have to run but res has no
 * run_resolver (a dry run); other errors with a one-line reason in err. */
int ifunc_resolve(Target *t, SymResolver *res, size_t def_idx, const char *name, const Symbol *sym,
                  uint64_t *ret, char *err, size_t errlen);
