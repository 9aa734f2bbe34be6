/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Entry writes while the threads run against a stop of every thread (docs/stops.md,
 * "The int3 window"), on a victim forked from this program: THREADS threads (the main
 * one included), CALLERS of them calling an 11-byte function in a loop (every call
 * runs into the int3 while it is there), the others spinning on the CPU outside it,
 * and HOGS processes spinning beside it.
 *
 *     ulp-bench-entrybp THREADS HOGS ROUNDS [CALLERS (default THREADS)] [STOP_MS (default 10000)]
 *
 * STOP_MS is how long one thread may take to stop (the Target's stop_timeout_ms, set as
 * soon as the Target is open): the library's 1 s default fails a round on a loaded
 * machine, where figures are wanted, not refusals.
 *
 * Each round: one stop of every thread (target_stop_all + target_resume_all, what an
 * entry write costs today), then the function's entry rewritten and put back with
 * entry_write_bp(). Prints one JSON line per round and one with the medians:
 * stw_us (the stop of every thread), bp_stw_us (any such window during the two writes:
 * 0), bp_max_thread_stop_us (the longest single-thread stop, from its request to the
 * resume, as --json's max_thread_stop_us), bp_max_held_us (the longest a thread was held
 * once stopped), bp_us (the two writes' wall time), moved (threads moved into the copy),
 * borrows (the stops of a thread for remote steps, the checks' stops left out).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/entry-bp.h"
#include "patcher/target.h"
#include "patcher/x86_64/relocate.h"

int bench_tiny(void);
int bench_tiny_new(void);
__asm__(".text\n"
        ".p2align 4\n.globl bench_tiny\n.type bench_tiny,@function\n"
        "bench_tiny:\n\tpush %rbx\n\tmov %rdi, %rbx\n\tpop %rbx\n\tmov $1, %eax\n\tret\n"
        ".size bench_tiny, .-bench_tiny\n"
        ".p2align 4\n.globl bench_tiny_new\n.type bench_tiny_new,@function\n"
        "bench_tiny_new:\n\tmov $2, %eax\n\tret\n"
        ".p2align 4\nbench_copy_area:\n\t.fill 256, 1, 0xcc\n"
        ".p2align 4\nbench_guard_area:\n\t.fill 2048, 1, 0xcc\n");
extern const char bench_copy_area[], bench_guard_area[];
#define TINY_SIZE 11
#define BENCH_STOP_MS 10000    /* a thread's stop on a loaded machine (STOP_MS) */

static void *caller(void *arg) {
        int (*volatile f)(void) = bench_tiny;
        for (;;)
                (void)f();
        return NULL;
}

static void *spinner(void *arg) {
        for (volatile unsigned long x = 0;; x++)
                ;
        return NULL;
}

static pid_t spawn_victim(int threads, int callers) {
        pid_t pid = fork();
        if (pid != 0)
                return pid;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (int i = 1; i < threads; i++) {
                pthread_t th;
                pthread_create(&th, NULL, i < callers ? caller : spinner, NULL);
        }
        if (callers > 0)
                caller(NULL);
        spinner(NULL);
        _exit(0);
}

static pid_t spawn_hog(void) {
        pid_t pid = fork();
        if (pid != 0)
                return pid;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (volatile unsigned long x = 0;; x++)
                ;
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The longest a single thread was held stopped (its stop collected to its resume), and
 * the longest from the request to the resume, over the single-thread stops seen. */
static uint64_t held_max, single_max;
/* Single-thread stops: the checks and the borrows for the remote steps. */
static unsigned stops;

static void on_stop(const TargetStopEvent *ev, void *ud) {
        if (ev->tid == 0)
                return;
        stops++;
        held_max = MAX(held_max, ev->resumed_ns - ev->stopped_ns);
        single_max = MAX(single_max, ev->resumed_ns - ev->requested_ns);
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n) {
        qsort(v, (size_t)n, sizeof(*v), cmp_u64);
        return v[n / 2];
}

int main(int argc, char **argv) {
        int threads = argc > 1 ? atoi(argv[1]) : 64, hogs = argc > 2 ? atoi(argv[2]) : 0;
        int rounds = argc > 3 ? atoi(argv[3]) : 5, callers = argc > 4 ? atoi(argv[4]) : threads;
        int stop_ms = argc > 5 ? atoi(argv[5]) : BENCH_STOP_MS;
        uint64_t at = (uint64_t)bench_tiny, copy = (uint64_t)bench_copy_area;
        uint64_t *stw, *bp_stw, *bp_thread, *bp_wall, *bp_held;
        pid_t victim, hog_pids[64];
        Relocation rel;
        EntryWrite apply, revert;
        char err[128];
        Target *t = NULL;
        int r;

        if (threads < 1 || hogs < 0 || hogs > 64 || rounds < 1 || rounds > 1000 || stop_ms < 1)
                return 2;
        stw = calloc((size_t)rounds, 8);
        bp_stw = calloc((size_t)rounds, 8);
        bp_thread = calloc((size_t)rounds, 8);
        bp_wall = calloc((size_t)rounds, 8);
        bp_held = calloc((size_t)rounds, 8);
        if (!stw || !bp_stw || !bp_thread || !bp_wall || !bp_held)
                return 1;
        if (relocate_entry((const uint8_t *)bench_tiny, TINY_SIZE, at, copy, &rel, err, sizeof(err)) < 0) {
                fprintf(stderr, "relocate: %s\n", err);
                return 1;
        }
        apply = (EntryWrite) { .at = at, .len = 5, .trap_dest = copy, .map = &rel, .copy = copy };
        memcpy(apply.cur, (const void *)at, 5);
        if (encode_entry_jump(apply.want, 5, at, (uint64_t)bench_tiny_new) != 5)
                return 1;
        revert = (EntryWrite) { .at = at, .len = 5, .trap_dest = copy };
        memcpy(revert.cur, apply.want, 5);
        memcpy(revert.want, apply.cur, 5);
        for (int i = 0; i < hogs; i++)
                hog_pids[i] = spawn_hog();
        victim = spawn_victim(threads, callers);
        usleep(1000000);        /* every thread started, out of the start's blocked signals */
        r = target_open(victim, &t);
        if (r >= 0) {
                t->stop_timeout_ms = stop_ms;
                r = target_write(t, copy, rel.code, rel.code_len);
        }
        for (int i = 0; i < rounds && r >= 0; i++) {
                EntryBpResult a, b;
                uint64_t t0;
                t->max_stw_ns = t->max_thread_stop_ns = 0;
                r = target_stop_all(t);
                if (r >= 0)
                        r = target_resume_all(t);
                stw[i] = t->max_stw_ns;
                t->max_stw_ns = t->max_thread_stop_ns = 0;
                held_max = single_max = 0;
                stops = 0;
                target_set_stop_hook(on_stop, NULL);
                t0 = now_ns();
                if (r >= 0)
                        r = entry_write_bp(t, (uint64_t)bench_guard_area, &apply, 1, &a);
                if (r >= 0)
                        r = entry_write_bp(t, (uint64_t)bench_guard_area, &revert, 1, &b);
                if (r < 0)
                        fprintf(stderr, "round %d: %s\n", i, strerror(-r));
                bp_wall[i] = now_ns() - t0;
                bp_stw[i] = t->max_stw_ns;
                bp_thread[i] = t->max_thread_stop_ns;
                bp_held[i] = held_max;
                target_set_stop_hook(NULL, NULL);
                if (r >= 0)
                        printf("{\"threads\":%d,\"callers\":%d,\"hogs\":%d,\"stw_us\":%.1f,\"bp_stw_us\":%.1f,"
                               "\"bp_max_thread_stop_us\":%.1f,\"bp_max_held_us\":%.1f,\"bp_us\":%.1f,\"moved\":%u,\"checked\":%u,\"borrows\":%u}\n",
                               threads, callers, hogs, stw[i] / 1e3, bp_stw[i] / 1e3, bp_thread[i] / 1e3,
                               bp_held[i] / 1e3, bp_wall[i] / 1e3, a.moved + b.moved, a.checked + b.checked,
                               stops - a.checked - b.checked);
        }
        if (r >= 0)
                printf("{\"median\":true,\"threads\":%d,\"callers\":%d,\"hogs\":%d,\"rounds\":%d,\"stw_us\":%.1f,\"bp_stw_us\":%.1f,"
                       "\"bp_max_thread_stop_us\":%.1f,\"bp_max_held_us\":%.1f,\"bp_us\":%.1f}\n", threads, callers, hogs, rounds,
                       median(stw, rounds) / 1e3, median(bp_stw, rounds) / 1e3,
                       median(bp_thread, rounds) / 1e3, median(bp_held, rounds) / 1e3,
                       median(bp_wall, rounds) / 1e3);
        else
                fprintf(stderr, "failed: %s\n", strerror(-r));
        if (t)
                target_free(t);
        kill(victim, SIGKILL);
        for (int i = 0; i < hogs; i++)
                kill(hog_pids[i], SIGKILL);
        while (wait(NULL) > 0)
                ;
        return r < 0;
}
