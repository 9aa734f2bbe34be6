/*
 * Test victim: several busy threads call the functions tests patch; the main thread
 * prints what they return every 10 ms, so a test sees what the process itself observes.
 *     tick N compute=C static=S lib=L ref=R
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int lib_value(int x);

static int secret; /* set at run time, so it stays a real variable */
volatile int sink;
volatile int bias; /* 0: keeps the functions from folding into a few bytes */
int compute(int x);
int target_helper(int x);
int ref_value(int x);

__attribute__((noipa)) int compute(int x) {
        int r = x + bias;
        for (int i = 0; i < 3; i++)
                r += i;
        return r * 2 - 6;
}

__attribute__((noipa)) static int static_fn(int x) {
        int r = x + bias;
        for (int i = 0; i < 2; i++)
                r ^= i;
        return r + 100;
}

/* Exported to patches (resolved against the main executable's symbols). */
__attribute__((noipa)) int target_helper(int x) {
        return x * 10 + secret;
}

__attribute__((noipa)) int ref_value(int x) {
        int r = x + bias;
        for (int i = 0; i < 2; i++)
                r += i;
        return r - 1;
}

static void *worker(void *arg) {
        (void)arg;
        for (;;) {
                sink = compute(1) + static_fn(2) + lib_value(3) + ref_value(4);
                if ((sink & 0xff) == 0)
                        usleep(1);
        }
        return NULL;
}

int main(int argc, char **argv) {
        int n = argc > 1 ? atoi(argv[1]) : 4;
        pthread_t t;

        secret = 7;
        setvbuf(stdout, NULL, _IOLBF, 0);
        for (int i = 0; i < n; i++)
                pthread_create(&t, NULL, worker, NULL);
        for (unsigned long tick = 0;; tick++) {
                printf("tick %lu compute=%d static=%d lib=%d ref=%d\n", tick, compute(10), static_fn(10),
                       lib_value(10), ref_value(10));
                usleep(10000);
        }
}
