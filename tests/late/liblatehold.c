/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A library tests/late's victim dlopen()s and dlclose()s: hold_value() for the victim to
 * print, and hold_wait(), where a thread of the victim waits while a file exists (a
 * thread in a function to patch: the switch of the library has to be tried again). */
#include <time.h>
#include <unistd.h>

int hold_value(void);
void hold_wait(const char *file);

volatile int hold_bias;

__attribute__((noipa)) int hold_value(void) {
        return 1 + hold_bias;
}

__attribute__((noipa)) void hold_wait(const char *file) {
        while (access(file, F_OK) == 0)
                nanosleep(&(struct timespec) { 0, 10 * 1000 * 1000 }, NULL);
}
