/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One apply or revert through libulp, timed from inside, for bench/run.
 *
 *     ulp-bench-op apply  PID PATCH.so [--global] [--timeout MS] [--hold]
 *     ulp-bench-op revert PID NAME     [--global] [--timeout MS]
 *     ulp-bench-op mem    PID [--stop-timeout MS]
 *
 * An apply or revert stops threads as the library does (attempts of at most 250 ms,
 * retried until --timeout, default 30 s). mem opens a Target of its own: --stop-timeout
 * (default 10 s) is how long one thread may take to stop there, instead of the library's
 * 1 s default, which a loaded machine can miss.
 *
 * Prints one JSON object: the UlpReport's figures, the wall time of the operation, and
 * what the ptrace layer's stop observer (target_set_stop_hook) saw: every single-thread
 * stop and every stop-the-world window. A single-thread stop is either a borrow (a
 * thread held for remote steps: the patch load, a callback, a guard's install; the
 * event says so) or a per-thread check. With --hold the transition is kept open once only one thread is
 * still pending (the victim's thread blocked inside a patched function): "holding" is
 * printed, and the transition goes on when a line arrives on stdin.
 *
 * mem sums the Rss and Size (/proc/PID/smaps) of what ulp mapped into PID: its control
 * block, the near areas of stubs and relocated entries, and the patches' mappings
 * (found from the control block, like every reader of ulp state).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/control.h"
#include "patcher/target.h"
#include "ulp/libulp.h"

#define MAX_EVENTS 65536
#define BENCH_STOP_MS 10000    /* a thread's stop on a loaded machine (--stop-timeout) */

typedef struct Observed {
        TargetStopEvent ev[MAX_EVENTS];
        size_t n;
        size_t lost;
} Observed;

static void observe(const TargetStopEvent *ev, void *userdata) {
        Observed *o = userdata;
        if (o->n < MAX_EVENTS)
                o->ev[o->n++] = *ev;
        else
                o->lost++;
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array, in microseconds. */
static double pct_us(const uint64_t *v, size_t n, double p) {
        size_t k;
        if (n == 0)
                return 0;
        k = (size_t)(p / 100.0 * (double)n + 0.999999);
        k = k == 0 ? 0 : k - 1;
        return (double)v[k < n ? k : n - 1] / 1000.0;
}

/*
 * Per thread, its longest check stop (interrupt sent to resumed) and its longest time
 * actually stopped (stop collected to resumed); then median and p99 over threads.
 */
static void print_stops(const Observed *o) {
        size_t n_checks = 0, n_threads = 0, n_stw = 0;
        uint64_t *stop = calloc(o->n + 1, sizeof(uint64_t)), *held = calloc(o->n + 1, sizeof(uint64_t));
        pid_t *tid = calloc(o->n + 1, sizeof(pid_t));
        uint64_t borrow_max = 0, stw_max = 0, stw_sum = 0, t_first = 0, t_last = 0;

        for (size_t i = 0; i < o->n; i++)
                if (o->ev[i].tid == 0) {
                        n_stw++;
                        stw_max = MAX(stw_max, o->ev[i].resumed_ns - o->ev[i].requested_ns);
                        stw_sum += o->ev[i].resumed_ns - o->ev[i].requested_ns;
                        if (!t_first)
                                t_first = o->ev[i].requested_ns;
                        t_last = o->ev[i].resumed_ns;
                }
        for (size_t i = 0; i < o->n; i++) {
                const TargetStopEvent *e = &o->ev[i];
                size_t k;
                if (e->tid == 0)
                        continue;
                if (e->borrowed) {
                        borrow_max = MAX(borrow_max, e->resumed_ns - e->requested_ns);
                        continue;
                }
                n_checks++;
                for (k = 0; k < n_threads && tid[k] != e->tid; k++)
                        ;
                if (k == n_threads)
                        tid[n_threads++] = e->tid;
                stop[k] = MAX(stop[k], e->resumed_ns - e->requested_ns);
                held[k] = MAX(held[k], e->resumed_ns - e->stopped_ns);
        }
        qsort(stop, n_threads, sizeof(uint64_t), cmp_u64);
        qsort(held, n_threads, sizeof(uint64_t), cmp_u64);
        printf(",\"check_stops\":%zu,\"checked_threads\":%zu", n_checks, n_threads);
        printf(",\"stop_median_us\":%.1f,\"stop_p99_us\":%.1f,\"stop_max_us\":%.1f",
               pct_us(stop, n_threads, 50), pct_us(stop, n_threads, 99), pct_us(stop, n_threads, 100));
        printf(",\"held_median_us\":%.1f,\"held_p99_us\":%.1f", pct_us(held, n_threads, 50),
               pct_us(held, n_threads, 99));
        printf(",\"borrow_max_us\":%.1f,\"stw_windows\":%zu,\"stw_max_us\":%.1f,\"stw_total_us\":%.1f",
               (double)borrow_max / 1000.0, n_stw, (double)stw_max / 1000.0, (double)stw_sum / 1000.0);
        printf(",\"transition_us\":%.1f,\"events_lost\":%zu", t_last > t_first ? (double)(t_last - t_first) / 1000.0 : 0.0,
               o->lost);
        free(stop);
        free(held);
        free(tid);
}

typedef struct Span {
        uint64_t lo, hi;
} Span;

static int mem(pid_t pid, int stop_ms) {
        Target *t = NULL;
        Control c = {};
        Span sp[1 + CONTROL_MAX_AREAS + CONTROL_MAX_PATCHES];
        size_t n = 0, n_maps = 0;
        uint64_t rss = 0, size = 0, lo = 0, hi = 0;
        bool in = false;
        char path[64], line[512];
        FILE *f;
        int r = target_open(pid, &t);

        if (r >= 0) {
                t->stop_timeout_ms = stop_ms;
                r = control_find(pid, &c.addr);
        }
        if (r > 0)
                r = control_load(t, &c);
        if (r > 0 || (r == 0 && c.img)) {
                sp[n++] = (Span) { c.addr, c.addr + sizeof(ControlImage) };
                for (unsigned i = 0; i < c.img->hdr.n_areas; i++)
                        sp[n++] = (Span) { c.img->areas[i].addr, c.img->areas[i].addr + c.img->areas[i].size };
                for (unsigned i = 0; i < c.img->hdr.n_patches; i++)
                        if (c.img->patches[i].map_size)
                                sp[n++] = (Span) { c.img->patches[i].map_start,
                                                   c.img->patches[i].map_start + c.img->patches[i].map_size };
        }
        control_done(&c);
        target_free(t);
        if (r < 0) {
                fprintf(stderr, "mem: %s\n", strerror(-r));
                return 1;
        }
        snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
        f = fopen(path, "re");
        if (!f)
                return 1;
        while (fgets(line, sizeof(line), f)) {
                unsigned long long a, b, kb;
                if (sscanf(line, "%llx-%llx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
                        lo = a;
                        hi = b;
                        in = false;
                        for (size_t i = 0; i < n; i++)
                                in |= lo < sp[i].hi && hi > sp[i].lo;
                        if (in) {
                                n_maps++;
                                size += (hi - lo) / 1024;
                        }
                } else if (in && sscanf(line, "Rss: %llu kB", &kb) == 1)
                        rss += kb;
        }
        fclose(f);
        printf("{\"ulp_rss_kb\":%llu,\"ulp_size_kb\":%llu,\"ulp_mappings\":%zu}\n", (unsigned long long)rss,
               (unsigned long long)size, n_maps);
        return 0;
}

static int run(UlpOp *op, int r, bool hold, unsigned *ret_holds) {
        unsigned next = 0, sw, total;
        bool held = false;

        while (r == 0) {
                if (hold && !held) {
                        ulp_op_progress(op, &sw, &total);
                        if (total > 0 && sw + 1 >= total) {
                                char line[16];
                                held = true;
                                printf("holding\n");
                                fflush(stdout);
                                if (!fgets(line, sizeof(line), stdin))
                                        return -EIO;
                                (*ret_holds)++;
                        }
                }
                r = ulp_op_step(op, &next);
                if (r == 0)
                        sleep_ms(next);
        }
        return r < 0 ? r : 0;
}

int main(int argc, char **argv) {
        static Observed obs;
        UlpOptions o = { .timeout_ms = 30000 };
        UlpReport rep = {};
        UlpOp *op = NULL;
        bool hold = false;
        unsigned holds = 0;
        int stop_ms = BENCH_STOP_MS;
        uint64_t t0, t1;
        int c, r;
        static const struct option longopts[] = {
                { "global", no_argument, NULL, 'g' },
                { "timeout", required_argument, NULL, 't' },
                { "hold", no_argument, NULL, 'H' },
                { "stop-timeout", required_argument, NULL, 's' },
                {}
        };

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0)
                switch (c) {
                case 'g':
                        o.global = true;
                        break;
                case 't':
                        o.timeout_ms = (unsigned)atoi(optarg);
                        break;
                case 'H':
                        hold = true;
                        break;
                case 's':
                        stop_ms = atoi(optarg);
                        if (stop_ms < 1)
                                return 2;
                        break;
                default:
                        return 2;
                }
        if (argc - optind == 2 && strcmp(argv[optind], "mem") == 0)
                return mem((pid_t)atoi(argv[optind + 1]), stop_ms);
        if (argc - optind != 3 || (strcmp(argv[optind], "apply") && strcmp(argv[optind], "revert"))) {
                fprintf(stderr, "usage: %s apply|revert PID PATCH.so|NAME [--global] [--timeout MS] [--hold] | mem PID [--stop-timeout MS]\n", argv[0]);
                return 2;
        }
        bool apply = strcmp(argv[optind], "apply") == 0;
        pid_t pid = (pid_t)atoi(argv[optind + 1]);
        const char *what = argv[optind + 2];
        int fd = -1;

        if (apply) {
                fd = open(what, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        fprintf(stderr, "%s: %s\n", what, strerror(errno));
                        return 1;
                }
        }
        target_set_stop_hook(observe, &obs);
        t0 = now_ns();
        r = apply ? ulp_op_apply(pid, fd, what, &o, &op, &rep) : ulp_op_revert(pid, what, &o, &op, &rep);
        if (r >= 0)
                r = run(op, r, hold, &holds);
        ulp_op_free(op);
        t1 = now_ns();
        target_set_stop_hook(NULL, NULL);

        printf("{\"op\":\"%s\",\"global\":%s,\"ok\":%s,\"errno\":%d,\"message\":\"", apply ? "apply" : "revert",
               o.global ? "true" : "false", r >= 0 ? "true" : "false", -r);
        for (const char *p = rep.message; *p; p++)
                if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
                        putchar(*p);
        printf("\",\"wall_us\":%.1f,\"total_ms\":%llu,\"threads\":%u,\"switched\":%u,\"retries\":%u",
               (double)(t1 - t0) / 1000.0, (unsigned long long)rep.total_ms, rep.threads, rep.switched, rep.retries);
        printf(",\"max_thread_stop_us\":%llu,\"max_stw_us\":%llu,\"held_open\":%u",
               (unsigned long long)rep.max_thread_stop_us, (unsigned long long)rep.max_stw_us, holds);
        print_stops(&obs);
        printf("}\n");
        ulp_report_done(&rep);
        return r >= 0 ? 0 : 1;
}
