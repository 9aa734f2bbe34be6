/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The second translation unit of the elf fixture: another static "helper". */

#include "fixture.h"

__attribute__((noinline)) static int helper(int x) {
        return x ^ 0x5a5a;
}

int other_entry(int x) {
        return helper(x) + 1;
}

void *fixture_helper_other(void) {
        return (void *)helper;
}
