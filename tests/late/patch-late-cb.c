/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Callbacks of an object loaded after the patch (docs/late-callbacks.md): libplugin.so's
 * callbacks append their names to the file $LATE_CB_FILE of the target; with
 * $LATE_CB_REFUSE set, pre_patch refuses (returns 7).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "ulp/patch.h"

ULP_PATCH_INFO("late-cb", "plugin_value returns 200 once libplugin.so is loaded; its callbacks say when they run");

int base_value_v2(void) {
        return 2;
}

int plugin_value_v2(void) {
        return 200;
}

static void note(const char *what, size_t len) {
        const char *f = getenv("LATE_CB_FILE");
        int fd = f ? open(f, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
        if (fd < 0)
                return;
        if (write(fd, what, len) < 0) {
                /* nothing to do about it in a callback */
        }
        close(fd);
}

static int pre_patch(void) {
        note("pre_patch\n", 10);
        return getenv("LATE_CB_REFUSE") ? 7 : 0;
}

static void post_patch(void) {
        note("post_patch\n", 11);
}

static int pre_unpatch(void) {
        note("pre_unpatch\n", 12);
        return 0;
}

static void post_unpatch(void) {
        note("post_unpatch\n", 13);
}

ULP_FUNC("libtrbase.so", "base_value", base_value_v2);
ULP_FUNC("libplugin.so", "plugin_value", plugin_value_v2);
ULP_CALLBACKS("libplugin.so", pre_patch, post_patch, pre_unpatch, post_unpatch);
