/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one way to report a failure: a one-line reason formatted into a caller's buffer
 * (err may be NULL, then nothing is written) and the -errno returned, so that a refusal
 * is one statement:
 *
 *     return fail(err, errlen, -EINVAL, "the patch names %s twice", sym);
 *
 * Library code (elf/, unwind/, patcher/) never prints: the caller decides whether and
 * where the reason is shown. The op layer's op_fail() is this into the UlpReport, plus
 * its one rule (a failure after the target executed a new program is that, -ESTALE). */

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

__attribute__((format(printf, 4, 0)))
static inline int vfail(char *err, size_t errlen, int r, const char *fmt, va_list ap) {
        if (err && errlen > 0)
                vsnprintf(err, errlen, fmt, ap);
        return r;
}

__attribute__((format(printf, 4, 5)))
static inline int fail(char *err, size_t errlen, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vfail(err, errlen, r, fmt, ap);
        va_end(ap);
        return r;
}
