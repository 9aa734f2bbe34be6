/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A patch using every macro of include/ulp/patch.h, for the patchmeta tests. */

#include <stddef.h>

#include <ulp/patch.h>

int compute_v2(int x);
void post_unpatch(void);

static long *counter_p;          /* relocated R_X86_64_RELATIVE in the records */
int *global_p;                   /* R_X86_64_64 against the symbol */

static int helper_v2(int x) {
        return x * 9 + (int)*counter_p;
}

int compute_v2(int x) {
        return helper_v2(x) + *global_p;
}

static int pre_patch(void) {
        return 0;
}

void post_unpatch(void) {
}

ULP_PATCH_INFO("full-patch", "every macro once");
ULP_FUNC(ULP_MAIN, "fixture_compute", compute_v2);
ULP_FUNC_POS(ULP_MAIN, "helper", 2, helper_v2);
ULP_FUNC("libfoo.so.1", "foo_parse", compute_v2);
ULP_REF(ULP_MAIN, "fixture_counter", counter_p);
ULP_REF_POS(ULP_MAIN, "fixture_global", 1, global_p);
ULP_BUILD_ID(ULP_MAIN, "0123456789ABCDEF0123");
ULP_BUILD_ID("libc.so.6", "aa55");
ULP_CALLBACKS(ULP_MAIN, pre_patch, NULL, NULL, post_unpatch);
ULP_REPLACE();
