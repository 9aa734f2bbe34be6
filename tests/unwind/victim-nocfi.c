/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Built without any CFI (no .eh_frame, no .debug_frame): a thread parked in a call from
 * here has a frame the unwinder can only guess past. */

#include <unistd.h>

void nocfi_park(void);

__attribute__((noinline, noipa)) void nocfi_park(void) {
        for (;;)
                pause();
}
