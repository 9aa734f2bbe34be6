/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What victim-guard shares with test-guard: a memfd mapped by both. The victim reports
 * what it observed itself. */

#include <stdint.h>

#define GUARD_CALLERS 8
#define GUARD_SPAWN_MAX 16384

typedef struct GuardShared {
        volatile int ready;
        volatile int raise_trap;          /* "dfl": execute an int3 of its own now */
        volatile uint64_t guarded_addr, other_addr, own_handler_addr;
        volatile uint64_t calls[GUARD_CALLERS][4]; /* per caller: results 1, 2, 3, anything else */
        /* mode "hot": tiny() (returns 1), tiny_new() (2), tiny_trapped() (3), and room in
         * the victim's own text for a relocated copy and a guard block */
        volatile uint64_t tiny_addr, tiny_size, tiny_new_addr, tiny_trapped_addr;
        volatile uint64_t copy_area, guard_area;
        volatile uint64_t own_traps;      /* its own handler ran (an int3 of its own) */
        volatile uint64_t own_trap_bad;   /* ...with a siginfo it did not expect */
        volatile uint64_t handler_now;    /* its SIGTRAP disposition, as sigaction() reads it */
        /* mode "spawn": a new thread every millisecond, whose first act is to take the
         * next index and write its tid there */
        volatile uint32_t spawn_n;
        volatile uint64_t usr2;           /* SIGUSR2 handled (mode "spawn") */
        volatile int32_t spawn_tids[GUARD_SPAWN_MAX];
} GuardShared;
