/*
 * Victim of the symbols tests: worker threads call a static function (mode "static") or
 * sit in clock_gettime, in the vDSO (mode "vdso"); mode "hold" adds one thread that
 * calls hold() in a loop (a patch makes it block there for good); the main thread
 * prints what the static function returns every 10 ms:
 *     tick N price=P
 */
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile int sink;
volatile int bias; /* 0: keeps the function from folding into a few bytes */

__attribute__((noinline, noipa)) static int price(int x) {
        int r = x + bias;
        for (int i = 0; i < 3; i++)
                r += i;
        return r * 2 - 6;
}

static void *worker_static(void *arg) {
        (void)arg;
        for (int i = 0;; i++) {
                sink = price(i);
                if ((i & 0xff) == 0)
                        usleep(1);
        }
        return NULL;
}

__attribute__((noinline, noipa)) int hold(int x);
__attribute__((noinline, noipa)) int hold(int x) {
        return x * 3 + bias;
}

static void *worker_hold(void *arg) {
        (void)arg;
        for (int i = 0;; i++) {
                sink = hold(i);
                usleep(1000);
        }
        return NULL;
}

/* Bursts of clock_gettime (about a millisecond) between short sleeps: a stop lands in
 * the vDSO most of the time the thread runs, without it spinning a shared machine's
 * CPUs flat out. */
static void *worker_vdso(void *arg) {
        struct timespec ts;

        (void)arg;
        for (;;) {
                for (int i = 0; i < 20000; i++) {
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        sink = (int)ts.tv_nsec;
                }
                usleep(1000);
        }
        return NULL;
}

int main(int argc, char **argv) {
        bool vdso = argc > 1 && strcmp(argv[1], "vdso") == 0;
        int n = argc > 2 ? atoi(argv[2]) : 4;
        pthread_t t;

        setvbuf(stdout, NULL, _IOLBF, 0);
        for (int i = 0; i < n; i++)
                pthread_create(&t, NULL, vdso ? worker_vdso : worker_static, NULL);
        if (argc > 1 && strcmp(argv[1], "hold") == 0)
                pthread_create(&t, NULL, worker_hold, NULL);
        for (unsigned long tick = 0;; tick++) {
                printf("tick %lu price=%d\n", tick, price(10));
                usleep(10000);
        }
}
