/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Scratch executable pages at chosen distances (near.h). */

#include <stdint.h>
#include <sys/mman.h>

#include "common/macro.h"
#include "tests/trampoline/near.h"

/* Maps at exactly hint or fails: kernels without MAP_FIXED_NOREPLACE take it as a hint. */
static void *map_at(uint64_t hint, size_t size) {
        void *p = mmap((void *)hint, size, PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

        if (p == MAP_FAILED)
                return NULL;
        if (p != (void *)hint) {
                munmap(p, size);
                return NULL;
        }
        return p;
}

/* Tries base +- i*step for i = 1..tries, nearest first. */
static void *map_around(uint64_t base, uint64_t step, int tries, size_t size) {
        for (int i = 1; i <= tries; i++) {
                void *p;

                if (base > (uint64_t)i * step) {
                        p = map_at(base - (uint64_t)i * step, size);
                        if (p)
                                return p;
                }
                if (base + (uint64_t)i * step < (1ULL << 47) - step) {
                        p = map_at(base + (uint64_t)i * step, size);
                        if (p)
                                return p;
                }
        }
        return NULL;
}

void *map_near(const void *addr, size_t size) {
        return map_around(ALIGN_DOWN((uint64_t)addr, 1ULL << 21), 1ULL << 21, 500, size);
}

void *map_far(const void *addr, size_t size) {
        return map_around(ALIGN_DOWN((uint64_t)addr, 1ULL << 21), 1ULL << 33, 500, size);
}
