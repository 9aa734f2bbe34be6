/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ns per ulp_shadow_get (docs/shadow.md): the runtime as built, loaded into this process,
 * holding 1 and then 10,000 variables; lookups of existing pairs in a scattered order,
 * and of missing ones. The median of 9 runs of 2,000,000 lookups each.
 *
 *     ulp-bench-shadow [RUNTIME.so]
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LOOKUPS 2000000
#define RUNS 9

typedef void *(*get_fn)(void *, unsigned long);
typedef void *(*alloc_fn)(void *, unsigned long, size_t, void *, void *);

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* Median ns per get of objs[order[i % n]] (+ miss: an id nothing has). */
static double measure(get_fn get, char *objs, const unsigned *order, unsigned n, unsigned long id) {
        double v[RUNS];
        for (int r = 0; r < RUNS; r++) {
                uintptr_t sink = 0;
                uint64_t t0 = now_ns();
                for (unsigned i = 0; i < LOOKUPS; i++)
                        sink += (uintptr_t)get(&objs[order[i % n]], id);
                v[r] = (double)(now_ns() - t0) / LOOKUPS;
                __asm__ volatile("" : : "r"(sink));
        }
        qsort(v, RUNS, sizeof(v[0]), cmp);
        return v[RUNS / 2];
}

int main(int argc, char **argv) {
        const char *path = argc > 1 ? argv[1] : SHADOW_RUNTIME;
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                fprintf(stderr, "cannot load %s: %s\n", path, dlerror());
                return 1;
        }
        get_fn get = (get_fn)dlsym(h, "ulp_shadow_get");
        alloc_fn alloc = (alloc_fn)dlsym(h, "ulp_shadow_alloc");
        static char objs[10000 * 64];
        static unsigned order[10000];
        unsigned seed = 1;

        for (unsigned i = 0; i < 10000; i++)
                order[i] = i * 64;
        for (unsigned i = 9999; i > 0; i--) {   /* a scattered order */
                seed = seed * 1103515245u + 12345u;
                unsigned j = (seed >> 8) % (i + 1), t = order[i];
                order[i] = order[j];
                order[j] = t;
        }
        if (!alloc(&objs[order[0]], 1, sizeof(long), NULL, NULL))
                return 1;
        printf("variables  hit ns/get  miss ns/get\n");
        printf("%9u  %10.1f  %11.1f\n", 1, measure(get, objs, order, 1, 1), measure(get, objs, order, 1, 2));
        for (unsigned i = 1; i < 10000; i++)
                if (!alloc(&objs[order[i]], 1, sizeof(long), NULL, NULL))
                        return 1;
        printf("%9u  %10.1f  %11.1f\n", 10000, measure(get, objs, order, 10000, 1),
               measure(get, objs, order, 10000, 2));
        return 0;
}
