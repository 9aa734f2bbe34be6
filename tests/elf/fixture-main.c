/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A target for the elf tests: a global, a static variable, a function of known size,
 * compiler clones, a static "helper" here and another one in fixture-other.c.
 * Run with "wait", it prints the runtime addresses of some functions on stdout and
 * sleeps until its stdin reaches end of file.
 */

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

int fixture_global = 42;
static long fixture_counter;

struct pair { int a, b, pad[8]; };

/* Exactly 3 bytes, for the size checks. */
__asm__(".text\n"
        ".globl fixture_sized\n"
        ".type fixture_sized, @function\n"
        "fixture_sized: nop; nop; ret\n"
        ".size fixture_sized, 3\n");

__attribute__((noinline)) static int helper(int x) {
        return x * 7 + (int)fixture_counter++;
}

/* gcc -O2 makes "scale.constprop.0" of it (k is always 3)... */
__attribute__((noinline)) static int scale(int x, int k) {
        return x * k + (x >> 3);
}

/* ... and "pair_sum.isra.0" of this one (only the fields are passed). */
__attribute__((noinline)) static int pair_sum(const struct pair *p) {
        return p->a * 3 + p->b;
}

int fixture_compute(int x) {
        struct pair p = { x, x + 1, { 0 } };
        return helper(x) + other_entry(x) + scale(x, 3) + scale(x + 1, 3) + pair_sum(&p);
}

void *fixture_helper_main(void) {
        return (void *)helper;
}

int main(int argc, char **argv) {
        volatile double d = argc;
        char c;

        if (argc < 2 || strcmp(argv[1], "wait") != 0)
                return fixture_compute(argc) + (int)cbrt(d) + fixture_global == 0;

        printf("%p %p %p\n", (void *)fixture_compute, fixture_helper_main(), fixture_helper_other());
        fflush(stdout);
        while (read(STDIN_FILENO, &c, 1) > 0)
                ;
        return (int)cbrt(d) == 99;
}
