/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Patch A of the shadow tests: a deposit counter per account, kept in a shadow variable
 * (the accounts have no field for it); audit reports it. Its pre-patch callback checks
 * the API's refusals inside the target first: a constructor that fails, an alloc of a
 * pair that exists (returns the number of the first check that failed).
 */
#include <stddef.h>

#include "ulp/patch.h"
#include "count.h"

#define ID_PROBE 0x5eed02

static int v2(void) {
        return 1;
}

static int refuse(void *obj, void *data, void *arg) {
        ++*(int *)arg;
        return -1;
}

static int set_to(void *obj, void *data, void *arg) {
        *(long *)data = (long)(size_t)arg;
        return 0;
}

static int pre_patch(void) {
        static struct account probe;
        int calls = 0;
        long *v;

        if (ulp_shadow_alloc(&probe, ID_PROBE, sizeof(long), refuse, &calls) || calls != 1)
                return 1;
        if (ulp_shadow_get(&probe, ID_PROBE))
                return 2;
        v = ulp_shadow_alloc(&probe, ID_PROBE, sizeof(long), set_to, (void *)77);
        if (!v || *v != 77 || (size_t)v % _Alignof(max_align_t))
                return 3;
        if (ulp_shadow_alloc(&probe, ID_PROBE, sizeof(long), NULL, NULL))
                return 4;
        if (ulp_shadow_get_or_alloc(&probe, ID_PROBE, sizeof(long), refuse, &calls) != v || calls != 1)
                return 5;
        ulp_shadow_free(&probe, ID_PROBE, NULL);
        if (ulp_shadow_get(&probe, ID_PROBE))
                return 6;
        return 0;
}

ULP_PATCH_INFO("shadow-count", "a deposit counter per account, in shadow variables");
ULP_FUNC(ULP_MAIN, "version", v2);
ULP_FUNC(ULP_MAIN, "deposit", deposit_counted);
ULP_FUNC(ULP_MAIN, "audit", audit_counted);
ULP_CALLBACKS(ULP_MAIN, pre_patch, NULL, NULL, NULL);
