/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A patch whose pre-patch callback gives up when its shadow variable's constructor
 * fails: the apply is cancelled with the callback's value. */
#include "ulp/patch.h"
#include "ulp/shadow.h"

static int v9(void) {
        return 9;
}

static int no_memory(void *obj, void *data, void *arg) {
        return -12;
}

static int pre_patch(void) {
        static int obj;
        return ulp_shadow_alloc(&obj, 9, 64, no_memory, NULL) ? 0 : 12;
}

ULP_PATCH_INFO("shadow-ctorfail", "a constructor that fails");
ULP_FUNC(ULP_MAIN, "version", v9);
ULP_CALLBACKS(ULP_MAIN, pre_patch, NULL, NULL, NULL);
