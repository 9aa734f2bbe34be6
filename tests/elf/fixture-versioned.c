/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A shared library exporting two versions of one function, vers@V1 and the default
 * vers@@V2 (fixture-versioned.map), with a local "vers" at the default's address, as
 * libc's debug file has a local "memcpy" at memcpy@@GLIBC_2.14's.
 */

int vers_v1(int x);
int vers_v2(int x);

int vers_v1(int x) {
        return x + 1;
}

int vers_v2(int x) {
        return x + 2;
}

__asm__(".symver vers_v1, vers@V1");
__asm__(".symver vers_v2, vers@@V2");
static int vers(int x) __attribute__((alias("vers_v2"), used));
