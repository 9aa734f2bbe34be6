/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tests/daemon's fix with slow pre- and post-patch callbacks that announce themselves: each
 * creates $ULP_TEST_MARK_DIR/pre (or post) in the target, then takes a second, so that
 * test-kill9.py can kill ulpd while a callback runs. */

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ulp/patch.h"

int inner(void);
int inner_v2(void);
int outer_v2(unsigned us);
int pre_patch(void);
void post_patch(void);

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

static void mark_and_wait(const char *what) {
        const char *dir = getenv("ULP_TEST_MARK_DIR");
        char path[512];

        if (dir) {
                snprintf(path, sizeof(path), "%s/%s", dir, what);
                close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        }
        usleep(1000000);
}

int pre_patch(void) {
        mark_and_wait("pre");
        return 0;
}

void post_patch(void) {
        mark_and_wait("post");
}

ULP_PATCH_INFO("daemon-fix-cb", "inner and outer, version 2, with slow callbacks");
ULP_FUNC(ULP_MAIN, "inner", inner_v2);
ULP_FUNC(ULP_MAIN, "outer", outer_v2);
ULP_REF(ULP_MAIN, "violations", violations_p);
ULP_CALLBACKS(ULP_MAIN, pre_patch, post_patch, NULL, NULL);
