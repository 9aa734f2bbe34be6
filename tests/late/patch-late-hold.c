/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * For tests/late's victim (docs/late-callbacks.md): base_value returns 2 at once,
 * hold_value 2 once liblatehold.so is loaded; hold_wait is replaced too, so that a
 * thread waiting in it keeps the library's switch from happening. The library's
 * callbacks print "cb: NAME" on the victim's standard output; with $LATE_POST_CRASH set
 * in the victim, post_patch crashes after its line (test-post-crash.sh); with
 * $LATE_PRE_SLOW, pre_patch sleeps that many seconds after its line (test-pre-overdue.sh);
 * with $LATE_PRE_TELL, it prints "cb: pre_patch returns" last, and with $LATE_PRE_RET it
 * returns that value; with $LATE_POST_SLOW, post_patch sleeps that many seconds after
 * its line, then prints "cb: post_patch returns" (test-call-windows.sh).
 */
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

/* One write of the whole line: the victim's own lines go to the same file. */
static void say(const char *line) {
        if (write(STDOUT_FILENO, line, strlen(line)) < 0) {
                /* nothing to do about it in a callback */
        }
}

static int pre_patch(void) {
        const char *slow = getenv("LATE_PRE_SLOW");

        say("cb: pre_patch\n");
        if (slow)
                sleep((unsigned)atoi(slow));
        if (getenv("LATE_PRE_TELL"))
                say("cb: pre_patch returns\n");
        return getenv("LATE_PRE_RET") ? atoi(getenv("LATE_PRE_RET")) : 0;
}

/* An address no process maps, hidden from the compiler. */
static volatile unsigned long nowhere = 16;

static void post_patch(void) {
        say("cb: post_patch\n");
        if (getenv("LATE_POST_SLOW")) {
                sleep((unsigned)atoi(getenv("LATE_POST_SLOW")));
                say("cb: post_patch returns\n");
        }
        if (getenv("LATE_POST_CRASH"))
                *(volatile int *)nowhere = 1;
}

static int pre_unpatch(void) {
        say("cb: pre_unpatch\n");
        return 0;
}

static void post_unpatch(void) {
        say("cb: post_unpatch\n");
}

ULP_FUNC("libtrbase.so", "base_value", base_value_v2);
ULP_FUNC("liblatehold.so", "hold_value", hold_value_v2);
ULP_FUNC("liblatehold.so", "hold_wait", hold_wait_v2);
ULP_CALLBACKS("liblatehold.so", pre_patch, post_patch, pre_unpatch, post_unpatch);
