/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Decoding of packed relative relocations: see relr.h. */

#include <errno.h>
#include <stdbool.h>

#include "elf/relr.h"

#define RELR_BITS 63
/* Room above an address or base for one bitmap's words, so that nothing wraps. */
#define RELR_SPAN_GUARD ((uint64_t)(RELR_BITS + 1) * 8)

int relr_foreach(const uint64_t *words, size_t n, RelrFn fn, void *userdata) {
        uint64_t base = 0;
        bool have_base = false;
        int r;

        for (size_t i = 0; i < n; i++) {
                uint64_t w = words[i];
                if ((w & 1) == 0) {
                        /* Increasing, so that no word is relocated twice and the
                         * count stays bounded by the space relocated. */
                        if (have_base && w < base)
                                return -EDOM;
                        if (w > UINT64_MAX - RELR_SPAN_GUARD)
                                return -EDOM;
                        r = fn(w, userdata);
                        if (r < 0)
                                return r;
                        base = w + 8;
                        have_base = true;
                        continue;
                }
                if (!have_base || base > UINT64_MAX - RELR_SPAN_GUARD)
                        return -EDOM;
                for (unsigned bit = 1; bit <= RELR_BITS; bit++)
                        if (w >> bit & 1) {
                                r = fn(base + (uint64_t)(bit - 1) * 8, userdata);
                                if (r < 0)
                                        return r;
                        }
                base += RELR_BITS * 8;
        }
        return 0;
}
