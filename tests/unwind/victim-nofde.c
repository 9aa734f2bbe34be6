/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A function without CFI (built without unwind tables): libdw looks for .debug_frame in
 * its module, and inflates its compressed debug sections to find it (test-unwind.c,
 * inflating_module_refused). */
void nofde_spin(void *arg);
void nofde_spin(void *arg) {
        (void) arg;
        for (;;)
                __asm__ volatile("");
}
