/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Patch B of the shadow tests: replaces patch A (ULP_REPLACE) and goes on with the same
 * counters, by the same <account, id>; reverted, it frees them all.
 */
#include "ulp/patch.h"
#include "count.h"

static int v3(void) {
        return 2;
}

static void post_unpatch(void) {
        ulp_shadow_free_all(ID_DEPOSITS, NULL);
}

ULP_PATCH_INFO("shadow-count2", "the deposit counters, continued");
ULP_FUNC(ULP_MAIN, "version", v3);
ULP_FUNC(ULP_MAIN, "deposit", deposit_counted);
ULP_FUNC(ULP_MAIN, "audit", audit_counted);
ULP_CALLBACKS(ULP_MAIN, NULL, NULL, NULL, post_unpatch);
ULP_REPLACE();
