/*
 * An example server for the ulp demo: worker threads settle transfers, each paying a
 * fee from fee_for(); the main thread reports what a 1000.00 transfer costs.
 * The bug: the fee is 10 % where the tariff says 1 % (at least 0.50).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

long fee_for(long cents);

static atomic_long fees_collected;
static atomic_long transfers;
volatile long tariff_percent = 10; /* the bug: should be 1 */

__attribute__((noipa)) long fee_for(long cents) {
        long fee = cents * tariff_percent / 100;
        if (fee < 50)
                fee = 50;
        return fee;
}

static void *worker(void *arg) {
        unsigned seed = (unsigned)(uintptr_t)arg;
        for (;;) {
                long amount = 100 + rand_r(&seed) % 100000;
                atomic_fetch_add(&fees_collected, fee_for(amount));
                atomic_fetch_add(&transfers, 1);
                usleep(100);
        }
        return NULL;
}

int main(int argc, char **argv) {
        int n = argc > 1 ? atoi(argv[1]) : 4;
        pthread_t t;

        setvbuf(stdout, NULL, _IOLBF, 0);
        for (int i = 0; i < n; i++)
                pthread_create(&t, NULL, worker, (void *)(uintptr_t)(i + 1));
        printf("bank: pid %d, %d worker threads\n", getpid(), n);
        for (;;) {
                long fee = fee_for(100000);
                printf("fee for a 1000.00 transfer: %ld.%02ld  (transfers so far: %ld)\n", fee / 100, fee % 100,
                       atomic_load(&transfers));
                sleep(1);
        }
}
