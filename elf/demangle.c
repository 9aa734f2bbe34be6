/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Demangling with the C++ runtime's own demangler, __cxa_demangle() of libstdc++
 * (the Itanium C++ ABI function, a C symbol), loaded with dlopen() on first use: ulp
 * stays a C program that does not link the C++ runtime into every tool, the demangler
 * is the one the compiler's ABI defines (what g++ and clang++ emit, libstdc++ decodes),
 * and a system without libstdc++ (no C++ program to patch) only loses demangled names,
 * with a message saying so. libiberty's cplus_demangle would be a static library and a
 * build dependency; elfutils does not export one.
 */

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "elf/demangle.h"

typedef char *(*cxa_demangle_fn)(const char *mangled, char *buf, size_t *len, int *status);

static cxa_demangle_fn cxa_demangle;
static pthread_once_t cxa_once = PTHREAD_ONCE_INIT;

static void cxa_load(void) {
        /* The handle stays open for the life of the process: the function is used from it. */
        void *h = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL);

        if (h)
                cxa_demangle = (cxa_demangle_fn)dlsym(h, "__cxa_demangle");
}

bool demangle_looks_demangled(const char *name) {
        return strstr(name, "::") || strpbrk(name, "()< ");
}

static bool word_char(char c) {
        return isalnum((unsigned char)c) || c == '_';
}

int demangle_normalize(const char *name, char *buf, size_t len) {
        size_t n = 0;

        for (const char *p = name; *p; p++) {
                if (*p == ' ') {
                        /* Kept once between two words: "unsigned long", "operator new". */
                        const char *q = p;
                        while (*q == ' ')
                                q++;
                        if (n == 0 || !word_char(buf[n - 1]) || !word_char(*q)) {
                                p = q - 1;
                                continue;
                        }
                        p = q - 1;
                }
                if (n + 1 >= len)
                        return -ENOBUFS;
                buf[n++] = *p;
        }
        if (len == 0)
                return -ENOBUFS;
        buf[n] = 0;
        return 0;
}

int demangle(const char *sym, char *buf, size_t len) {
        int status = 0, r;
        char *d;

        if (strncmp(sym, "_Z", 2) != 0)
                return -EINVAL;
        pthread_once(&cxa_once, cxa_load);
        if (!cxa_demangle)
                return -ENOTSUP;
        d = cxa_demangle(sym, NULL, NULL, &status);
        if (!d || status != 0) {
                free(d);
                return status == -1 ? -ENOMEM : -EINVAL;
        }
        r = demangle_normalize(d, buf, len);
        free(d);
        return r;
}
