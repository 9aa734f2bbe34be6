/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the patcher and the shadow-variable runtime (runtime/shadow.c) agree on, besides
 * the API of include/ulp/shadow.h: the counters the runtime keeps for status, which the
 * patcher reads from the target's memory (and bounds: the target may have written
 * anything there). docs/shadow.md.
 */

#include <stdint.h>

#define ULP_SHADOW_STATS_MAGIC 0x31574453504c55ULL /* "ULPSDW1" */
#define ULP_SHADOW_ABI 1

/* The runtime's exported symbols the patcher binds patches to, in this order. */
#define ULP_SHADOW_N_ENTRIES 5
#define ULP_SHADOW_ENTRY_NAMES \
        "ulp_shadow_get", "ulp_shadow_alloc", "ulp_shadow_get_or_alloc", "ulp_shadow_free", \
        "ulp_shadow_free_all"
#define ULP_SHADOW_STATS_SYMBOL "ulp_shadow_stats"

struct ulp_shadow_stats {
        uint64_t magic;          /* ULP_SHADOW_STATS_MAGIC */
        uint32_t abi;            /* ULP_SHADOW_ABI */
        uint32_t lock_owner;     /* thread id holding the writers' lock, 0 none */
        uint64_t variables;      /* live shadow variables */
        uint64_t bytes;          /* their sizes, as asked for */
        uint64_t mapped;         /* memory the runtime mapped for them (never returned but large data) */
};
