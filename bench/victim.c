/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The benchmark victim.
 *
 *     bench-victim THREADS idle|busy|duty [INSIDE_PCT [PERIOD_US]]
 *
 * THREADS counts the main thread. The others are workers:
 *   idle  blocked in a futex wait, never inside a patched function;
 *   busy  spinning on the CPU outside the patched functions;
 *   duty  each period, INSIDE_PCT % of it asleep inside f0 (a patched function), the
 *         rest asleep outside; phases are staggered.
 * The main thread prints "ready" once every worker runs, then reads commands on stdin:
 *   m  times calls of f0(0) in a loop, prints "ns MEDIAN MIN" (ns per call)
 *   v  prints "v RET": f0(0)'s return value (BENCH_V2 and more: patched)
 *   b  starts a thread that blocks inside f0, prints "blocked" once it is there
 *   u  releases it (prints "released")
 *   q  exits
 */
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/victim.h"

#define STACK_SIZE (128 * 1024)
#define BATCHES 21
#define CALLS_PER_BATCH 100000

static int block_pipe[2];
static atomic_int started, in_block;
static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cond = PTHREAD_COND_INITIALIZER;
static unsigned inside_us, outside_us;

static void sleep_us(unsigned us) {
        struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000L };
        while (nanosleep(&ts, &ts) < 0)
                ;
}

__attribute__((noipa)) void bench_wait(int mode) {
        char c;
        if (mode > 0) {
                sleep_us((unsigned)mode);
                return;
        }
        atomic_store(&in_block, 1);
        while (read(block_pipe[0], &c, 1) < 0)
                ;
        atomic_store(&in_block, 0);
}

static void *idle_worker(void *arg) {
        (void)arg;
        atomic_fetch_add(&started, 1);
        pthread_mutex_lock(&idle_lock);
        for (;;)
                pthread_cond_wait(&idle_cond, &idle_lock);
        return NULL;
}

static void *busy_worker(void *arg) {
        volatile unsigned long x = 0;
        (void)arg;
        atomic_fetch_add(&started, 1);
        for (;;) {
                for (int i = 0; i < 1000; i++)
                        x += (unsigned long)i;
                (void)x;
        }
        return NULL;
}

static void *duty_worker(void *arg) {
        unsigned phase = (unsigned)(uintptr_t)arg;
        atomic_fetch_add(&started, 1);
        sleep_us(phase);
        for (;;) {
                f0((int)inside_us);
                if (outside_us)
                        sleep_us(outside_us);
        }
        return NULL;
}

static void *block_thread(void *arg) {
        (void)arg;
        f0(-1);
        return NULL;
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* ns per call of f0(0): batches of calls, median and minimum over the batches. On one
 * CPU, always the same, so that measurements compare. */
static void measure(void) {
        double v[BATCHES];
        cpu_set_t one, old;
        CPU_ZERO(&one);
        CPU_SET(0, &one);
        sched_getaffinity(0, sizeof(old), &old);
        sched_setaffinity(0, sizeof(one), &one);
        for (int i = 0; i < CALLS_PER_BATCH; i++)  /* warm up */
                f0(0);
        for (int b = 0; b < BATCHES; b++) {
                uint64_t t0 = now_ns();
                for (int i = 0; i < CALLS_PER_BATCH; i++)
                        f0(0);
                v[b] = (double)(now_ns() - t0) / CALLS_PER_BATCH;
        }
        sched_setaffinity(0, sizeof(old), &old);
        qsort(v, BATCHES, sizeof(double), cmp_double);
        printf("ns %.4f %.4f\n", v[BATCHES / 2], v[0]);
}

static int start_thread(void *(*fn)(void *), void *arg) {
        pthread_attr_t a;
        pthread_t t;
        int r;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, STACK_SIZE);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        r = pthread_create(&t, &a, fn, arg);
        pthread_attr_destroy(&a);
        return r;
}

int main(int argc, char **argv) {
        char line[64];
        int n, r = 0;
        unsigned pct, period;

        if (argc < 3) {
                fprintf(stderr, "usage: %s THREADS idle|busy|duty [INSIDE_PCT [PERIOD_US]]\n", argv[0]);
                return 2;
        }
        /* Never outlives the driver, however it ends. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
                return 1;
        n = atoi(argv[1]);
        pct = argc > 3 ? (unsigned)atoi(argv[3]) : 50;
        period = argc > 4 ? (unsigned)atoi(argv[4]) : 2000;
        inside_us = period * pct / 100;
        outside_us = period - inside_us;
        if (pipe(block_pipe) < 0)
                return 1;
        setvbuf(stdout, NULL, _IOLBF, 0);
        srand((unsigned)getpid());
        for (int i = 1; i < n && r == 0; i++) {
                if (strcmp(argv[2], "idle") == 0)
                        r = start_thread(idle_worker, NULL);
                else if (strcmp(argv[2], "busy") == 0)
                        r = start_thread(busy_worker, NULL);
                else
                        r = start_thread(duty_worker, (void *)(uintptr_t)((unsigned)rand() % period));
        }
        if (r != 0) {
                fprintf(stderr, "pthread_create: %s\n", strerror(r));
                return 1;
        }
        while (atomic_load(&started) < n - 1)
                sleep_us(1000);
        puts("ready");
        while (fgets(line, sizeof(line), stdin)) {
                switch (line[0]) {
                case 'm':
                        measure();
                        break;
                case 'v':
                        printf("v %d\n", f0(0));
                        break;
                case 'b':
                        start_thread(block_thread, NULL);
                        while (!atomic_load(&in_block))
                                sleep_us(100);
                        puts("blocked");
                        break;
                case 'u':
                        if (write(block_pipe[1], "x", 1) != 1)
                                return 1;
                        while (atomic_load(&in_block))
                                sleep_us(100);
                        puts("released");
                        break;
                case 'q':
                        return 0;
                }
        }
        return 0;
}
