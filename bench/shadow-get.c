/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ns per ulp_shadow_get (docs/shadow.md): the runtime as built, loaded into this process,
 * holding 1, then 10,000, then 1,000,000 variables; lookups of existing pairs in a
 * scattered order, and of missing ones. The median of 9 runs of 2,000,000 lookups each.
 * The objects are addresses 64 bytes apart: the runtime never touches them.
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

#define MAX_VARS 1000000u
#define OBJ_BASE ((uintptr_t)0x7e0000000000ull)

static void *obj_at(unsigned i) {
        return (void *)(OBJ_BASE + 64 * (uintptr_t)i);
}

/* Median ns per get of obj_at(order[i % n]) (+ miss: an id nothing has). */
static double measure(get_fn get, const unsigned *order, unsigned n, unsigned long id) {
        double v[RUNS];
        for (int r = 0; r < RUNS; r++) {
                uintptr_t sink = 0;
                uint64_t t0 = now_ns();
                for (unsigned i = 0; i < LOOKUPS; i++)
                        sink += (uintptr_t)get(obj_at(order[i % n]), id);
                v[r] = (double)(now_ns() - t0) / LOOKUPS;
                __asm__ volatile("" : : "r"(sink));
        }
        qsort(v, RUNS, sizeof(v[0]), cmp);
        return v[RUNS / 2];
}

/* The first n of a scattered order of 0..n-1 (order[0] stays 0). */
static void scatter(unsigned *order, unsigned n) {
        unsigned seed = 1;
        for (unsigned i = 0; i < n; i++)
                order[i] = i;
        for (unsigned i = n - 1; i > 1; i--) {
                seed = seed * 1103515245u + 12345u;
                unsigned j = 1 + (seed >> 8) % i, t = order[i];
                order[i] = order[j];
                order[j] = t;
        }
}

int main(int argc, char **argv) {
        const char *path = argc > 1 ? argv[1] : SHADOW_RUNTIME;
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        static const unsigned counts[] = { 1, 10000, MAX_VARS };
        unsigned have = 0;
        unsigned *order = malloc(MAX_VARS * sizeof(*order));

        if (!h || !order) {
                fprintf(stderr, "cannot load %s: %s\n", path, h ? "out of memory" : dlerror());
                return 1;
        }
        get_fn get = (get_fn)dlsym(h, "ulp_shadow_get");
        alloc_fn alloc = (alloc_fn)dlsym(h, "ulp_shadow_alloc");
        printf("variables  hit ns/get  miss ns/get\n");
        for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
                unsigned n = counts[c];
                for (; have < n; have++)
                        if (!alloc(obj_at(have), 1, sizeof(long), NULL, NULL))
                                return 1;
                scatter(order, n);
                printf("%9u  %10.1f  %11.1f\n", n, measure(get, order, n, 1), measure(get, order, n, 2));
                fflush(stdout);
        }
        free(order);
        return 0;
}
