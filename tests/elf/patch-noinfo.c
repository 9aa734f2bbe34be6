/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A minimal patch: one function, no ULP_PATCH_INFO (its name comes from the file). */

#include <ulp/patch.h>

static int helper_v3(int x) {
        return x + 3;
}

ULP_FUNC(ULP_MAIN, "helper", helper_v3);
