/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The implementation the target's dynamic linker chose for an IFUNC symbol, read back
 * from a GOT slot it filled (docs/reach.md): the defining object's own IRELATIVE slots
 * (glibc's internal calls), then any object's slot bound to the symbol by name (GLOB_DAT,
 * JUMP_SLOT once bound). A value counts only when it points into code of the defining
 * object; a lazy slot still pointing at its PLT does not. No code runs in the target.
 */

#include "elf/symtab.h"
#include "patcher/loader.h"
#include "patcher/target.h"

/* name is defined as the IFUNC sym (its resolver at sym->value) by module def_idx of
 * res. Returns 0 with the chosen implementation's runtime address, or -ENOENT when no
 * slot holds it yet. */
int ifunc_chosen(Target *t, SymResolver *res, size_t def_idx, const char *name, const Symbol *sym,
                 uint64_t *ret);
