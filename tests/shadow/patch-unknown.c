/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A patch calling a ulp_shadow_* function ulp does not have: refused before loading. */
#include "ulp/patch.h"

void *ulp_shadow_resize(void *obj, unsigned long id, unsigned long size);

static int v8(void) {
        static int obj;
        return ulp_shadow_resize(&obj, 1, 8) ? 8 : 0;
}

ULP_PATCH_INFO("shadow-unknown", "an API ulp does not have");
ULP_FUNC(ULP_MAIN, "version", v8);
