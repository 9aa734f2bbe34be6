/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The indexes of a SymTab built by the first query that needs them (see symtab.c): by
 * address, of sized functions (only messages naming where a thread is, and a patch's
 * own small table, ask), and of the functions whose name has a '.', where compiler
 * clones ("f.isra.0") are found. Written through a const SymTab, as symtab.c explains.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "elf/symtab-internal.h"
#include "elf/symtab.h"

static bool sym_is_function(const Symbol *s) {
        return (s->type == STT_FUNC || s->type == STT_GNU_IFUNC ||
                (s->type == STT_NOTYPE && s->size > 0)) && s->size > 0;
}

static int addr_cmp(const void *a, const void *b, void *userdata) {
        const SymTab *st = userdata;
        uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
        const SymEntry *x = &st->v[i], *y = &st->v[j];

        if (x->sym.value != y->sym.value)
                return x->sym.value < y->sym.value ? -1 : 1;
        if (symtab__bind_rank(x->sym.bind) != symtab__bind_rank(y->sym.bind))
                return symtab__bind_rank(x->sym.bind) - symtab__bind_rank(y->sym.bind);
        return i < j ? -1 : i > j;
}

/* The by-address index of sized functions, built by the first address lookup: only
 * messages (naming where a thread is) and a patch's own small table ask. */
static int symtab_index_addr(const SymTab *cst) {
        SymTab *st = (SymTab *)cst;    /* see the top of symtab.c */
        int r = symtab__ready(st);

        if (r < 0)
                return r;
        if (st->addr_ready)
                return 0;
        st->by_addr = malloc(MAX(st->n, (size_t)1) * sizeof(uint32_t));
        if (!st->by_addr)
                return -ENOMEM;
        for (size_t i = 0; i < st->n; i++)
                if (!st->v[i].dropped && sym_is_function(&st->v[i].sym))
                        st->by_addr[st->n_addr++] = (uint32_t)i;
        qsort_r(st->by_addr, st->n_addr, sizeof(uint32_t), addr_cmp, st);
        st->addr_ready = true;
        return 0;
}

/* Binary search for the last function starting at or before vaddr, then a short walk
 * back in case an earlier, larger function encloses it (nested or overlapping symbols). */
int symtab_lookup_addr(const SymTab *st, uint64_t vaddr, Symbol *ret) {
        int r = symtab_index_addr(st);
        size_t lo = 0, hi = st->n_addr;

        if (r < 0)
                return r;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (st->v[st->by_addr[mid]].sym.value <= vaddr)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        /* lo is the first entry above vaddr. Aliases sort global-first, so walk back to
         * the first entry of the containing start address. */
        for (size_t k = lo, steps = 0; k-- > 0 && steps < 16; steps++) {
                const Symbol *s = &st->v[st->by_addr[k]].sym;
                if (vaddr >= s->value + s->size)
                        continue;
                while (k > 0 && st->v[st->by_addr[k - 1]].sym.value == s->value &&
                       vaddr < s->value + st->v[st->by_addr[k - 1]].sym.size)
                        s = &st->v[st->by_addr[--k]].sym;
                if (ret)
                        *ret = *s;
                return 0;
        }
        return -ENOENT;
}

/* Whether s is a sequence of compiler clone suffixes: ".constprop.N", ".isra.N",
 * ".part.N", ".cold", ".cold.N", ".lto_priv.N", ".clone.N", ".specialized.N" in any
 * combination, e.g. ".isra.0.cold" or ".constprop.0.isra.0". */
bool symbol_is_clone_suffix(const char *s) {
        static const char *const kinds[] = {
                "constprop", "isra", "part", "cold", "lto_priv", "clone", "specialized",
        };

        if (!*s)
                return false;
        while (*s) {
                size_t k;
                if (*s++ != '.')
                        return false;
                for (k = 0; k < ELEMENTSOF(kinds); k++) {
                        size_t l = strlen(kinds[k]);
                        if (strncmp(s, kinds[k], l) == 0 && (s[l] == '.' || s[l] == 0)) {
                                s += l;
                                break;
                        }
                }
                if (k == ELEMENTSOF(kinds))
                        return false;
                /* An optional ".N" number; "cold" often has none. */
                if (s[0] == '.' && s[1] >= '0' && s[1] <= '9') {
                        s++;
                        while (*s >= '0' && *s <= '9')
                                s++;
                }
        }
        return true;
}

static int clone_cmp(const void *a, const void *b, void *userdata) {
        const SymTab *st = userdata;
        uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
        int c = strcmp(st->v[i].sym.name, st->v[j].sym.name);

        return c ? c : i < j ? -1 : i > j;
}

/* The functions whose name has a '.', sorted by name then table order: where clones are
 * ("f.isra.0"), built by the first search for them. */
static int symtab_index_clones(const SymTab *cst) {
        SymTab *st = (SymTab *)cst;    /* see the top of symtab.c */
        int r = symtab__ready(st);

        if (r < 0)
                return r;
        if (st->clones_ready)
                return 0;
        st->clones = malloc(MAX(st->n, (size_t)1) * sizeof(uint32_t));
        if (!st->clones)
                return -ENOMEM;
        for (size_t i = 0; i < st->n; i++)
                if (!st->v[i].dropped && st->v[i].sym.type == STT_FUNC && strchr(st->v[i].sym.name, '.'))
                        st->clones[st->n_clones++] = (uint32_t)i;
        qsort_r(st->clones, st->n_clones, sizeof(uint32_t), clone_cmp, st);
        st->clones_ready = true;
        return 0;
}

int symtab_foreach_clone(const SymTab *st, const char *name,
                         void (*cb)(const Symbol *sym, void *userdata), void *userdata) {
        size_t len = strlen(name), lo = 0, hi;
        _cleanup_free_ char *prefix = malloc(len + 2);
        int r;

        if (!prefix)
                return -ENOMEM;
        memcpy(prefix, name, len);
        memcpy(prefix + len, ".", 2);
        r = symtab_index_clones(st);
        if (r < 0)
                return r;

        /* Names starting with "NAME." form one run of the sorted index. */
        hi = st->n_clones;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(st->v[st->clones[mid]].sym.name, prefix) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        int n = 0;
        for (size_t i = lo; i < st->n_clones; i++) {
                const Symbol *s = &st->v[st->clones[i]].sym;
                if (strncmp(s->name, prefix, len + 1) != 0)
                        break;
                if (!symbol_is_clone_suffix(s->name + len))
                        continue;
                if (cb)
                        cb(s, userdata);
                n++;
        }
        return n;
}
