/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The record of broken invariants (common/invariant.h), read with
 * ulp_invariant_failures(). Library code prints nothing: the caller reports. */

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/invariant.h"
#include "ulp/libulp.h"

static atomic_uint failures;
static atomic_bool first_ready;
static char first[256];

void invariant_failed(const char *expr, const char *file, int line, const char *func) {
        /* Only the first writer fills the message, so that a reader never sees two
         * messages mixed; later ones are counted only. */
        if (atomic_fetch_add(&failures, 1) == 0)
                snprintf(first, sizeof(first), "%s:%d %s(): assertion \"%s\" failed", file, line, func, expr);
        else
                return;
        atomic_store(&first_ready, true);
}

unsigned ulp_invariant_failures(const char **ret_first) {
        unsigned n = atomic_load(&failures);

        if (ret_first)
                *ret_first = atomic_load(&first_ready) ? first : NULL;
        return n;
}
