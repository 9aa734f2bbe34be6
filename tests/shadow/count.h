/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The deposit counter of the shadow tests' patches A (patch-count.c) and B
 * (patch-count2.c): one per account, in a shadow variable under ID_DEPOSITS. B goes on
 * with A's counters, and patch-peek.c reads them, because all name them by the same
 * <account, id>.
 */
#pragma once

#include "ulp/shadow.h"

#define ID_DEPOSITS 0x5eed01

/* The victim's account (victim.c): it has no field for the counter. */
struct account {
        long number;
        long balance;
};

static inline void deposit_counted(struct account *a, long cents) {
        long *n = ulp_shadow_get_or_alloc(a, ID_DEPOSITS, sizeof(long), NULL, NULL);
        __atomic_add_fetch(&a->balance, cents, __ATOMIC_RELAXED);
        if (n)
                __atomic_add_fetch(n, 1, __ATOMIC_RELAXED);
}

static inline long audit_counted(struct account *a) {
        long *n = ulp_shadow_get(a, ID_DEPOSITS);
        return n ? __atomic_load_n(n, __ATOMIC_RELAXED) : 0;
}
