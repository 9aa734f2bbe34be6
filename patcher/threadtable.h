/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * The thread state table in the target: from a thread pointer (fs:0, equal to
 * fs_base) to that thread's patch state during a transition. Written by ulp only
 * while the thread concerned is stopped; read by the dispatch stubs (stub.h).
 *
 * Layout at table_addr, n = 1 << order slots:
 *     uint64_t tp[n];          0 = empty slot
 *     uint8_t  state[n];       THREAD_UNPATCHED / THREAD_PATCHED
 * Open addressing with linear probing from thread_table_hash(tp, order). Slots are
 * filled only at transition init, with every thread stopped; afterwards only state
 * bytes change (a one-byte write is atomic for the readers). A thread not in the
 * table is in the transition's target state, a byte kept elsewhere (StubParams).
 */

#include <stdint.h>

enum {
        THREAD_UNDEFINED = -1,
        THREAD_UNPATCHED = 0,
        THREAD_PATCHED = 1,
};

#define THREAD_TABLE_HASH_MUL 0x9E3779B97F4A7C15ULL

static inline uint64_t thread_table_hash(uint64_t tp, unsigned order) {
        return (tp * THREAD_TABLE_HASH_MUL) >> (64 - order);
}
