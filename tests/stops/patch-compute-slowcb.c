/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* compute() as in tests/core/patch-compute.c, with a pre-patch callback that takes
 * $STOPS_CB_MS milliseconds of the victim's environment (default 3000): a remote call
 * long enough for a thread left late by the borrow to stop meanwhile (run.sh,
 * late-callback). */
#include <stdlib.h>
#include <unistd.h>

#include <ulp/patch.h>

int compute_v2(int x);

int compute_v2(int x) {
        return x * 3;
}

static int pre_patch(void) {
        const char *ms = getenv("STOPS_CB_MS");
        long n = ms ? atol(ms) : 3000;

        usleep((useconds_t)(n > 0 && n < 600000 ? n : 3000) * 1000);
        return 0;
}

ULP_PATCH_INFO("compute-fix-cb", "compute returns x*3, after a slow pre-patch callback");
ULP_FUNC(ULP_MAIN, "compute", compute_v2);
ULP_CALLBACKS(ULP_MAIN, pre_patch, NULL, NULL, NULL);
