/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A tiny test harness: TEST(name) { ... } defines a test case registered at load time;
 * ASSERT_* abort the current case with a message; TEST_MAIN() runs them all (or the one
 * named by its argument) and exits 0 when all passed, 1 otherwise or when no case has
 * that name, 77 when every case skipped (test_skip()).
 */

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void (*test_fn)(void);
struct test_case { const char *name; test_fn fn; };

#define TEST_MAX 256
extern struct test_case test__cases[TEST_MAX];
extern int test__n;
extern jmp_buf test__jmp;
extern int test__skipped;

#define TEST(name_) \
        static void test_##name_(void); \
        __attribute__((constructor)) static void test__register_##name_(void) { \
                test__cases[test__n++] = (struct test_case) { #name_, test_##name_ }; \
        } \
        static void test_##name_(void)

#define TEST__FAIL(...) do { \
                fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__); \
                fprintf(stderr, __VA_ARGS__); \
                fputc('\n', stderr); \
                longjmp(test__jmp, 1); \
        } while (0)

#define ASSERT_TRUE(e) do { if (!(e)) TEST__FAIL("assertion failed: %s", #e); } while (0)
#define ASSERT_OK(e) do { \
                long long _r = (long long)(e); \
                if (_r < 0) TEST__FAIL("%s failed: %lld (%s)", #e, _r, strerror((int)-_r)); \
        } while (0)
#define ASSERT_ERR(e, err) do { \
                long long _r = (long long)(e); \
                if (_r != (err)) TEST__FAIL("%s = %lld, expected %s (%d)", #e, _r, #err, (int)(err)); \
        } while (0)
#define ASSERT_EQ(a, b) do { \
                long long _a = (long long)(a), _b = (long long)(b); \
                if (_a != _b) TEST__FAIL("%s == %s: %lld != %lld", #a, #b, _a, _b); \
        } while (0)
#define ASSERT_EQ_U64(a, b) do { \
                uint64_t _a = (uint64_t)(a), _b = (uint64_t)(b); \
                if (_a != _b) TEST__FAIL("%s == %s: 0x%" PRIx64 " != 0x%" PRIx64, #a, #b, _a, _b); \
        } while (0)
#define ASSERT_STREQ(a, b) do { \
                const char *_a = (a), *_b = (b); \
                if (!_a || !_b || strcmp(_a, _b) != 0) \
                        TEST__FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, _a ? _a : "(null)", _b ? _b : "(null)"); \
        } while (0)

/* The factor by which deadlines stretch on a loaded machine: $ULP_TEST_SLOWDOWN, a
 * whole number from 1 to 100 (scripts/run-tests sets it), else runnable tasks per
 * core rounded up, 1 to 10. A deadline waits for a condition; this only says how long
 * before giving up. */
static inline unsigned test_slowdown(void) {
        const char *s = getenv("ULP_TEST_SLOWDOWN");
        double load;
        long n;

        if (s) {
                unsigned long v = strtoul(s, NULL, 10);
                return v < 1 ? 1 : v > 100 ? 100 : (unsigned) v;
        }
        n = sysconf(_SC_NPROCESSORS_ONLN);
        if (getloadavg(&load, 1) != 1 || n < 1)
                return 1;
        load = load / (double) n + 0.999;
        return load < 1 ? 1 : load > 10 ? 10 : (unsigned) load;
}

/* target_open() (patcher/target.h) with a stop deadline that holds on a loaded machine:
 * the tests that use it assert what threads do once stopped, not how fast they stop
 * (the library's default, TARGET_STOP_TIMEOUT_MS, was missed under load). */
#define TEST_STOP_TIMEOUT_MS (10000 * (int) test_slowdown())
#define TEST_TARGET_OPEN(pid, tp) ({ \
                int _to = target_open((pid), (tp)); \
                if (_to >= 0) \
                        (*(tp))->stop_timeout_ms = TEST_STOP_TIMEOUT_MS; \
                _to; })

/* Marks the current case skipped, with the reason, and leaves it. */
#define test_skip(...) do { \
                fprintf(stderr, "  skipped: "); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); \
                test__skipped++; longjmp(test__jmp, 2); \
        } while (0)

#define TEST_MAIN() \
        struct test_case test__cases[TEST_MAX]; \
        int test__n, test__skipped; \
        jmp_buf test__jmp; \
        int main(int argc, char **argv) { \
                volatile int failed = 0, ran = 0; \
                for (volatile int i = 0; i < test__n; i++) { \
                        if (argc > 1 && strcmp(argv[1], test__cases[i].name) != 0) \
                                continue; \
                        ran++; \
                        int r = setjmp(test__jmp); \
                        if (r == 0) { \
                                test__cases[i].fn(); \
                                fprintf(stderr, "ok   %s\n", test__cases[i].name); \
                        } else if (r == 1) { \
                                fprintf(stderr, "FAIL %s\n", test__cases[i].name); \
                                failed++; \
                        } else \
                                fprintf(stderr, "skip %s\n", test__cases[i].name); \
                } \
                if (argc > 1 && ran == 0) { \
                        fprintf(stderr, "FAIL no test case named \"%s\"\n", argv[1]); \
                        return 1; \
                } \
                if (failed) return 1; \
                return ran > 0 && test__skipped == ran ? 77 : 0; \
        }
