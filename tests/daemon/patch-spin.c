/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A patch for tests/daemon/victim.c whose pre-patch callback (post-patch with
 * -DSPIN_POST) never returns: each apply holds ulpd until it gives up on the callback
 * (test-dos.py). */

#include <sys/prctl.h>
#include <unistd.h>

#include "ulp/patch.h"

int inner_v2(void);

int inner_v2(void) {
        return 2;
}

/* Never returns; a callback past its deadline runs on (docs/fault-tolerance.md), so it
 * sleeps rather than burn a CPU until the victim ends. The thread it runs in is named
 * "spin-callback": a test sees that the callback runs. */
static void spin(void) {
        prctl(PR_SET_NAME, "spin-callback");
        for (;;)
                usleep(1000);
}

#ifdef SPIN_POST
int inner(void);
int outer_v2(unsigned us);

/* outer() too, so that a thread inside it (the victim's sleeper) holds the transition
 * open: it ends, and runs its post-patch callback, in a later step. */
int outer_v2(unsigned us) {
        int a = inner();
        if (us)
                usleep(us);
        return inner() + a - 2;
}

static void post_patch(void) {
        spin();
}

ULP_FUNC(ULP_MAIN, "outer", outer_v2);

ULP_PATCH_INFO("spin-post", "a post-patch callback that spins");
ULP_CALLBACKS(ULP_MAIN, NULL, post_patch, NULL, NULL);
#else
static int pre_patch(void) {
        spin();
        return 0;
}

ULP_PATCH_INFO("spin", "a pre-patch callback that spins");
ULP_CALLBACKS(ULP_MAIN, pre_patch, NULL, NULL, NULL);
#endif
ULP_FUNC(ULP_MAIN, "inner", inner_v2);
