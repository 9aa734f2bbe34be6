/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one-line reason of a failure, for library code that reports into a caller's
 * buffer (err may be NULL): formats it into err and returns r, so that a refusal is
 * one statement, "return fail(err, errlen, -EINVAL, "...", ...);". */

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

__attribute__((format(printf, 4, 5)))
static inline int fail(char *err, size_t errlen, int r, const char *fmt, ...) {
        va_list ap;

        if (err && errlen > 0) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return r;
}
