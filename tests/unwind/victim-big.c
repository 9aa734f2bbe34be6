/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A library of more than 1 MiB whose CFI lies past its first megabyte: an unwinder that
 * maps it touches those pages (test-unwind.c, truncated_module_file). */
__attribute__((used)) static const char pad[1 << 20] = { 1 };

const char *big_pad(void);
const char *big_pad(void) {
        return pad;
}

void big_spin(void *arg);
__attribute__((noinline)) static void spin_inner(volatile int *x) {
        for (;;)
                (*x)++;
}

void big_spin(void *arg) {
        volatile int x = 0;
        (void) arg;
        spin_inner(&x);
}
