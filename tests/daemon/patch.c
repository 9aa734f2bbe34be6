/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The fix for tests/daemon/victim.c: version 2 of inner() and outer(), outer() checking
 * its partner as version 1 does. Built by meson, and by the sticky-patch test with
 * -DVICTIM_BUILD_ID="..." to pin the victim's build; variants with callbacks below. */

#include <stdatomic.h>
#include <unistd.h>

#include "ulp/patch.h"

int inner(void);           /* the target's: the call goes through its dispatch */
int inner_v2(void);
int outer_v2(unsigned us);

static atomic_ulong *violations_p;

int inner_v2(void) {
        return 2;
}

int outer_v2(unsigned us) {
        int a = inner();
        if (us)
                usleep(us);
        int b = inner();
        if (a != 2 || b != 2)
                atomic_fetch_add(violations_p, 1);
        return 2;
}

#ifndef PATCH_NAME
#define PATCH_NAME "daemon-fix"   /* test-sticky.py builds it with a name of its own */
#endif
ULP_PATCH_INFO(PATCH_NAME, "inner and outer, version 2");
ULP_FUNC(ULP_MAIN, "inner", inner_v2);
ULP_FUNC(ULP_MAIN, "outer", outer_v2);
ULP_REF(ULP_MAIN, "violations", violations_p);
#ifdef VICTIM_BUILD_ID
ULP_BUILD_ID(ULP_MAIN, VICTIM_BUILD_ID);
#endif

#ifdef EXEC_ON_PATCH
#include <stdlib.h>
/* For the exec tests (test-auth.py): the pre-patch callback makes the process execute
 * $DAEMON_EXEC_PROG $DAEMON_EXEC_ARG while ulp has it stopped, as any process might. */
static int pre_patch(void) {
        char *prog = getenv("DAEMON_EXEC_PROG");
        char *argv[] = { prog, getenv("DAEMON_EXEC_ARG"), NULL };

        if (prog)
                execv(prog, argv);
        return 0;
}
ULP_CALLBACKS(ULP_MAIN, pre_patch, NULL, NULL, NULL);
#endif

#ifdef SLOW_CALLBACKS
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
/* For test-kill9.py (tests/control): slow pre- and post-patch callbacks that announce
 * themselves: each creates $ULP_TEST_MARK_DIR/pre (or post) in the target, then takes a
 * second, so that ulpd can be killed while a callback runs. */
static void mark_and_wait(const char *what) {
        const char *dir = getenv("ULP_TEST_MARK_DIR");
        char path[512];

        if (dir) {
                snprintf(path, sizeof(path), "%s/%s", dir, what);
                close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        }
        usleep(1000000);
}

static int pre_patch(void) {
        mark_and_wait("pre");
        return 0;
}

static void post_patch(void) {
        mark_and_wait("post");
}
ULP_CALLBACKS(ULP_MAIN, pre_patch, post_patch, NULL, NULL);
#endif
