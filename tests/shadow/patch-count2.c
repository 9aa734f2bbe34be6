/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Patch B of the shadow tests: replaces patch A (ULP_REPLACE) and goes on with the same
 * counters, by the same <account, id>; reverted, it frees them all.
 */
#include "ulp/patch.h"
#include "ulp/shadow.h"

#define ID_DEPOSITS 0x5eed01

struct account {
        long number;
        long balance;
};

static int v3(void) {
        return 2;
}

static void deposit_v3(struct account *a, long cents) {
        long *n = ulp_shadow_get_or_alloc(a, ID_DEPOSITS, sizeof(long), NULL, NULL);
        __atomic_add_fetch(&a->balance, cents, __ATOMIC_RELAXED);
        if (n)
                __atomic_add_fetch(n, 1, __ATOMIC_RELAXED);
}

static long audit_v3(struct account *a) {
        long *n = ulp_shadow_get(a, ID_DEPOSITS);
        return n ? __atomic_load_n(n, __ATOMIC_RELAXED) : 0;
}

static void post_unpatch(void) {
        ulp_shadow_free_all(ID_DEPOSITS, NULL);
}

ULP_PATCH_INFO("shadow-count2", "the deposit counters, continued");
ULP_FUNC(ULP_MAIN, "version", v3);
ULP_FUNC(ULP_MAIN, "deposit", deposit_v3);
ULP_FUNC(ULP_MAIN, "audit", audit_v3);
ULP_CALLBACKS(ULP_MAIN, NULL, NULL, NULL, post_unpatch);
ULP_REPLACE();
