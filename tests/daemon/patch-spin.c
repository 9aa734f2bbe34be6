/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A patch for tests/daemon/victim.c whose pre-patch callback never returns: each apply
 * holds ulpd until it gives up on the callback (test-dos.py). */

#include "ulp/patch.h"

int inner_v2(void);

int inner_v2(void) {
        return 2;
}

static int pre_patch(void) {
        for (;;)
                __asm__ volatile("" ::: "memory");
        return 0;
}

ULP_PATCH_INFO("spin", "a pre-patch callback that spins");
ULP_FUNC(ULP_MAIN, "inner", inner_v2);
ULP_CALLBACKS(ULP_MAIN, pre_patch, NULL, NULL, NULL);
