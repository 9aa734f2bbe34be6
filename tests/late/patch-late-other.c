/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * For tests/late's victim (docs/late-callbacks.md): base_value returns 3 at once,
 * hold_value 3 while liblatehold.so is loaded, and the patch's callbacks are those of libtrbase.so, which is
 * loaded at the apply: they run at the apply and the revert, never when liblatehold.so
 * comes or goes. They print "cb: base NAME" on the victim's standard output.
 */
#include <string.h>
#include <unistd.h>

#include "ulp/patch.h"

ULP_PATCH_INFO("late-other", "hold_value returns 3; the callbacks are libtrbase.so's");

int base_value_v3(void) {
        return 3;
}

int hold_value_v3(void) {
        return 3;
}

static void say(const char *line) {
        if (write(STDOUT_FILENO, line, strlen(line)) < 0) {
                /* nothing to do about it in a callback */
        }
}

static int pre_patch(void) {
        say("cb: base pre_patch\n");
        return 0;
}

static void post_patch(void) {
        say("cb: base post_patch\n");
}

static int pre_unpatch(void) {
        say("cb: base pre_unpatch\n");
        return 0;
}

static void post_unpatch(void) {
        say("cb: base post_unpatch\n");
}

ULP_FUNC("libtrbase.so", "base_value", base_value_v3);
ULP_FUNC("liblatehold.so", "hold_value", hold_value_v3);
ULP_CALLBACKS("libtrbase.so", pre_patch, post_patch, pre_unpatch, post_unpatch);
