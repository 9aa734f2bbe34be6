/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * For tests/late's victim (docs/late-callbacks.md): base_value returns 2 at once,
 * hold_value 2 once liblatehold.so is loaded; hold_wait is replaced too, so that a
 * thread waiting in it keeps the library's switch from happening. The library's
 * callbacks append their names to the file $LATE_CB_FILE of the target.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ulp/patch.h"

ULP_PATCH_INFO("late-hold", "hold_value returns 2 while liblatehold.so is loaded; its callbacks say when they run");

int base_value_v2(void) {
        return 2;
}

int hold_value_v2(void) {
        return 2;
}

void hold_wait_v2(const char *file) {
        while (access(file, F_OK) == 0)
                nanosleep(&(struct timespec) { 0, 10 * 1000 * 1000 }, NULL);
}

static void note(const char *what) {
        const char *f = getenv("LATE_CB_FILE");
        int fd = f ? open(f, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
        if (fd < 0)
                return;
        if (write(fd, what, strlen(what)) < 0) {
                /* nothing to do about it in a callback */
        }
        close(fd);
}

static int pre_patch(void) {
        note("pre_patch\n");
        return 0;
}

static void post_patch(void) {
        note("post_patch\n");
}

static int pre_unpatch(void) {
        note("pre_unpatch\n");
        return 0;
}

static void post_unpatch(void) {
        note("post_unpatch\n");
}

ULP_FUNC("libtrbase.so", "base_value", base_value_v2);
ULP_FUNC("liblatehold.so", "hold_value", hold_value_v2);
ULP_FUNC("liblatehold.so", "hold_wait", hold_wait_v2);
ULP_CALLBACKS("liblatehold.so", pre_patch, post_patch, pre_unpatch, post_unpatch);
