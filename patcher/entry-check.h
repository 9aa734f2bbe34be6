/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * Whether a function's entry can take ulp's jump (docs/reach.md): the one rule that
 * `ulpctl check`/`apply` (op-apply.c) and ulp-build (ulpbuild/, which refuses a changed
 * function the patcher would refuse) both apply, so that they cannot disagree.
 */

#include <stddef.h>
#include <stdint.h>

#include "elf/symtab.h"
#include "patcher/x86_64/relocate.h"

/* The padding a function shorter than its entry jump may lend it: up to an endbr64 and
 * the jump past its end. */
#define ENTRY_PAD_MAX (4 + JMP_REL32_SIZE)

/* The bytes after sym in which no symbol of st starts, up to ENTRY_PAD_MAX. */
size_t entry_pad_after(const SymTab *st, const Symbol *sym);

/*
 * A dry run of the relocation of sym's entry at addr (its own address will do: the real
 * copy goes near it). code holds sym->size bytes of the function, then pad_avail bytes
 * after it (at most entry_pad_after(); fewer when they cannot be read). Fills *ret.
 * Returns 0, or -errno with the refusal, one line naming the function, in msg:
 *   -ENOSPC  "function NAME is too small to patch (N bytes, a jump needs M): WHY", or
 *            "function NAME has size 0 in the symbol table: ..."
 *   other    "cannot redirect NAME: WHY" (relocate_entry()'s errors).
 */
int entry_check(const SymTab *st, const char *name, const Symbol *sym, const uint8_t *code, size_t pad_avail,
                uint64_t addr, Relocation *ret, char *msg, size_t msglen);
