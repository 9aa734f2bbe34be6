/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small helpers shared by every layer: cleanup attributes, array sizes, the clock. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Declares funcp(type *p), which calls func(*p) unless *p is NULL: the cleanup helper of
 * a type, defined once next to func's declaration. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                 \
        static inline void func##p(type *p) {                   \
                if (*p)                                         \
                        func(*p);                               \
        }

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t monotonic_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline void freep(void *p) { free(*(void **)p); }
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

/* Takes ownership out of a cleanup variable. */
#define TAKE_PTR(p) ({ __typeof__(p) _t = (p); (p) = NULL; _t; })
#define TAKE_FD(fd) ({ int _t = (fd); (fd) = -1; _t; })

/* Makes room for one more element at v[n] of an array with alloc elements allocated:
 * doubles them (first when there are none), so that n appends cost linear time in all.
 * 0, or -ENOMEM with v and alloc as they were. */
#define GROW_FOR_ONE(v, n, alloc, first) ({                                     \
                int _r = 0;                                                     \
                if ((n) == (alloc)) {                                           \
                        size_t _a = (alloc) ? (alloc) * 2 : (first);            \
                        __typeof__(v) _v = reallocarray((v), _a, sizeof(*(v))); \
                        if (_v) {                                               \
                                (v) = _v;                                       \
                                (alloc) = _a;                                   \
                        } else                                                  \
                                _r = -ENOMEM;                                   \
                }                                                               \
                _r;                                                             \
        })

/* errno as a negative return value, never 0 even if errno was not set. */
static inline int negative_errno(void) { return errno > 0 ? -errno : -EIO; }
