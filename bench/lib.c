/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The library every process of the processes benchmark loads, as a libc or OpenSSL
 * would be: bench-patch-lib.so replaces blib_value(). Long enough for an entry jump. */
int blib_value(int x);

__attribute__((noipa)) int blib_value(int x) {
        for (int i = 0; i < 8; i++) {
                x = x * 31 + i;
                __asm__ volatile("" : "+r"(x));
        }
        return x;
}
