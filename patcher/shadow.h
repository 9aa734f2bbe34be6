/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * The shadow-variable runtime in a target (docs/shadow.md): built from runtime/shadow.c,
 * embedded in the patcher, mapped into a process once, when a patch there first refers
 * to ulp_shadow_*, recorded in the control block's header and never unmapped.
 */

#include <stdbool.h>
#include <stdint.h>

#include "patcher/control.h"
#include "patcher/loader.h"

#define SHADOW_RUNTIME_NAME PATCH_NAME_SHADOW_RUNTIME

/* Maps and links the runtime into t on the borrowed thread th (near [near_lo, near_hi)),
 * unless c's header records one already, and writes the header. Then points res at its
 * entry points. err gets the reason of a failure. */
int shadow_ensure(Target *t, Thread *th, Control *c, SymResolver *res, uint64_t near_lo, uint64_t near_hi,
                  char *err, size_t errlen);

/* Whether th's instruction pointer lies in the runtime img records: it may hold the
 * runtime's writers' lock, so it is not borrowed for a callback. */
bool shadow_has_thread(const ControlImage *img, const Thread *th);

typedef struct ShadowStats {
        uint64_t variables;
        uint64_t bytes;
        uint64_t mapped;
} ShadowStats;

struct ulp_shadow_stats;
/* Whether counters read from a target are believable (-EBADMSG if not); *ret gets them. */
int shadow_check_stats(const struct ulp_shadow_stats *s, ShadowStats *ret);

/* Reads the runtime's counters from the target: -ENOENT when it has no runtime,
 * -EBADMSG when they are not believable (the target may have written anything). */
int shadow_read_stats(Target *t, const ControlImage *img, ShadowStats *ret);
