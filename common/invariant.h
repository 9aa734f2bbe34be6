/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Lifecycle invariants of the core, checked in every build (they are a compare and a
 * branch, never in a loop over a target's memory), where the kernel's livepatch code
 * would WARN_ON: a transition cancelled in the unpatched direction, a thread state
 * that is neither patched nor unpatched, a patch index beyond the table.
 *
 * A broken invariant is a bug of ulp, not of the target, and library code does not
 * abort for it (docs/architecture.md, "Invariants"): the function returns -EUCLEAN
 * before it writes anything more into the target, the failure is counted, and the
 * first one is kept for the caller to report (ulp_invariant_failures()).
 *
 *     ASSERT_RETURN(tr->target_state == THREAD_PATCHED, -EUCLEAN);
 *     if (WARN_ON(slot >= CONTROL_TABLE_SLOTS))
 *             return -EUCLEAN;
 */

#include <stdbool.h>

void invariant_failed(const char *expr, const char *file, int line, const char *func);

/* True when cond holds, which it must not: recorded. */
#define WARN_ON(cond) ({                                                        \
        bool _w = !!(cond);                                                     \
        if (__builtin_expect(_w, 0))                                            \
                invariant_failed(#cond, __FILE__, __LINE__, __func__);          \
        _w;                                                                     \
})

/* Returns r from the calling function unless expr holds. */
#define ASSERT_RETURN(expr, r) do {                                             \
                if (WARN_ON(!(expr)))                                           \
                        return (r);                                             \
        } while (0)
