/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* For victim-lock.c: value() returns 2; the pre-patch callback takes the victim's
 * shared_lock and holds it until the victim's `release` is set (SIGUSR1), far past any
 * callback deadline the test gives (test-overdue.sh). */

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "ulp/patch.h"

static pthread_mutex_t *lock_p;
static volatile sig_atomic_t *release_p;

int value_v2(void) {
        return 2;
}

static int pre_patch(void) {
        pthread_mutex_lock(lock_p);
        while (!*release_p)
                usleep(10000);
        pthread_mutex_unlock(lock_p);
        return 0;
}

#ifdef PLAIN
/* test-leftover.sh: the same function without a callback, under another name. */
ULP_PATCH_INFO("fault-plain", "value() returns 2");
ULP_FUNC(ULP_MAIN, "value", value_v2);
#else
ULP_PATCH_INFO("fault-lock", "value() returns 2; a pre-patch callback holding the victim's lock");
ULP_FUNC(ULP_MAIN, "value", value_v2);
ULP_REF(ULP_MAIN, "shared_lock", lock_p);
ULP_REF(ULP_MAIN, "release", release_p);
ULP_CALLBACKS(ULP_MAIN, pre_patch, NULL, NULL, NULL);
#endif
