/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Callbacks of an object not loaded whose functions the patch does not replace: refused
 * (nothing would ever run them). */
#include "ulp/patch.h"

ULP_PATCH_INFO("late-nofunc", "callbacks of libplugin.so only");

int base_value_v3(void) {
        return 3;
}

static int pre_patch(void) {
        return 0;
}

ULP_FUNC("libtrbase.so", "base_value", base_value_v3);
ULP_CALLBACKS("libplugin.so", pre_patch, NULL, NULL, NULL);
