/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Stacked on patch A (not a replacement): its own audit reads the counters A keeps. */
#include "ulp/patch.h"
#include "count.h"

static int v4(void) {
        return 3;
}

static long audit_v4(struct account *a) {
        long *n = ulp_shadow_get(a, ID_DEPOSITS);
        return n ? __atomic_load_n(n, __ATOMIC_RELAXED) : -2;
}

ULP_PATCH_INFO("shadow-peek", "the counters of patch A, read by another patch");
ULP_FUNC(ULP_MAIN, "version", v4);
ULP_FUNC(ULP_MAIN, "audit", audit_v4);
