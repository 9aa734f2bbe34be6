/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Stands for a ulp patch: victim-unwind loads it from a memfd named "ulp-patch:unwind",
 * the way ulp maps patches, and parks a thread in it. */

#include <unistd.h>

void patch_park(void);

__attribute__((noinline, noipa)) static void patch_inner(void) {
        for (;;)
                pause();
}

void patch_park(void) {
        patch_inner();
        __asm__ volatile("" ::: "memory");
}
