/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How ulp-build-diff ends (ulp-build-diff.h): a refusal (exit 1) or an error (exit 2). */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "ulpbuild/ulp-build-diff.h"

const char *binary_path;

void refuse(const char *fmt, ...) {
        va_list ap;

        fputs("ulp-build: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

void die(const char *fmt, ...) {
        va_list ap;

        fputs("ulp-build-diff: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(2);
}

void *xcalloc(size_t n, size_t sz) {
        void *p = calloc(n ? n : 1, sz);
        if (!p)
                die("out of memory");
        return p;
}
