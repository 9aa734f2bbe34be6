/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whether a function's entry can take ulp's jump (entry-check.h, docs/reach.md). */

#include <errno.h>
#include <string.h>

#include "common/errno-clause.h"
#include "common/errfmt.h"
#include "patcher/entry-check.h"
#include "patcher/x86_64/insn.h"

/* See entry-check.h. */
size_t entry_pad_after(const SymTab *st, const Symbol *sym) {
        uint64_t end = sym->value + sym->size;
        Symbol next;

        return symtab_first_start(st, end, end + ENTRY_PAD_MAX, &next) >= 0 ? next.value - end : ENTRY_PAD_MAX;
}

/* See entry-check.h. */
int entry_check(const SymTab *st, const char *name, const Symbol *sym, const uint8_t *code, size_t pad_avail,
                uint64_t addr, Relocation *ret, char *msg, size_t msglen) {
        uint64_t end = sym->value + sym->size;
        char err[160] = "";
        Symbol next = {};
        bool limited;
        size_t need;
        int r;

        /* The symbol size is where its code ends: without it, nothing says which bytes
         * after the entry are still the function's. */
        if (sym->size == 0)
                return fail(msg, msglen, -ENOSPC, "function %s has size 0 in the symbol table: where its code "
                            "ends is unknown, so its entry cannot take a jump", name);
        r = relocate_entry_padded(code, sym->size, pad_avail, addr, addr, ret, err, sizeof(err));
        if (r == -ENOSPC) {
                need = (insn_is_endbr64(code, sym->size) ? 4 : 0) + JMP_REL32_SIZE;
                limited = strncmp(err, "only ", 5) == 0 &&
                          symtab_first_start(st, end, end + ENTRY_PAD_MAX, &next) >= 0;
                return fail(msg, msglen, r, "function %s is too small to patch (%llu bytes, a jump needs %zu): %s%s%s",
                            name, (unsigned long long)sym->size, need, err, limited ? ", then " : "",
                            limited ? next.name : "");
        }
        if (r < 0)
                return fail(msg, msglen, r, "cannot redirect %s: %s", name, err[0] ? err : process_errno_clause(r));
        return 0;
}
