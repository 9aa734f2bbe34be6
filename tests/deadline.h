/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Waiting for a condition in tests that watch a victim process: a deadline in
 * milliseconds on the monotonic clock, polled every millisecond. The deadline is how
 * long to wait before giving up, never the assertion itself.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "test.h"

static inline uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Sleeps ms milliseconds, through signals. */
static inline void sleep_ms(long ms) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Polls cond every millisecond for up to ms times test_slowdown() (a loaded machine
 * stretches every wait); true when it held. */
#define WAIT_UNTIL(cond, ms) ({ \
                uint64_t _end = now_ns() + (uint64_t)(ms) * test_slowdown() * 1000000ULL; \
                bool _ok; \
                while (!(_ok = (cond)) && now_ns() < _end) \
                        sleep_ms(1); \
                _ok; \
        })
