/*
 * The trampoline victim: workers call the assembly functions of asm-funcs.S in tight
 * loops and count results that are neither the original's nor the patch's. One thread
 * sits in held() (patched too) calling them as well: while it is there it cannot
 * switch, so it runs the relocated originals, and every result must be the original's.
 * A byte written into the fifo argv[2] lets it leave. Prints every 20 ms:
 *     held_calls=N held_wrong=N wrong=N new=N held=0|1
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

long a_rip_load(long), a_rip_store(long), a_lea(long), a_jcc(long), a_jrcxz(long), a_call(long),
        a_endbr(long), a_backjump(long);
long held(void);

typedef long (*fn)(long);
static const fn funcs[] = { a_rip_load, a_rip_store, a_lea, a_jcc, a_jrcxz, a_call, a_endbr };
static const long base[] = { 1000, 7, 2000, 3000, 4000, 5000, 6000 };
#define N (sizeof(funcs) / sizeof(funcs[0]))

atomic_ulong held_calls, held_wrong, wrong, newer;
atomic_int is_held, release;
static const char *fifo;

static long original(unsigned i, long x) {
        if (i == 4 && x == 0)
                return 4;
        return x + base[i];
}

/* The patch's versions return x + 1 + 10 * i. */
static long patched(unsigned i, long x) {
        return x + 1 + 10 * (long)i;
}

__attribute__((noipa)) long held(void) {
        long x = 0;
        atomic_store(&is_held, 1);
        while (!atomic_load(&release)) {
                for (unsigned i = 0; i < N; i++) {
                        long r = funcs[i](x);
                        atomic_fetch_add(&held_calls, 1);
                        if (r != original(i, x))
                                atomic_fetch_add(&held_wrong, 1);
                }
                x = (x + 1) & 0xffff;
        }
        atomic_store(&is_held, 0);
        return x;
}

static void *worker(void *arg) {
        long x = (long)(uintptr_t)arg;
        for (;;) {
                for (unsigned i = 0; i < N; i++) {
                        long r = funcs[i](x);
                        if (r == patched(i, x))
                                atomic_fetch_add(&newer, 1);
                        else if (r != original(i, x))
                                atomic_fetch_add(&wrong, 1);
                }
                x = (x + 1) & 0xffff;
        }
        return NULL;
}

static void *held_thread(void *arg) {
        (void)arg;
        held();
        return NULL;
}

static void *releaser(void *arg) {
        char c;
        int fd = open(fifo, O_RDONLY);
        (void)arg;
        if (fd >= 0 && read(fd, &c, 1) >= 0)
                atomic_store(&release, 1);
        return NULL;
}

int main(int argc, char **argv) {
        int n = argc > 1 ? atoi(argv[1]) : 4;
        pthread_t t;

        setvbuf(stdout, NULL, _IOLBF, 0);
        fifo = argc > 2 ? argv[2] : NULL;
        if (a_backjump(3) != 3)
                return 2;
        for (int i = 0; i < n; i++)
                pthread_create(&t, NULL, worker, (void *)(uintptr_t)(i * 1000));
        if (fifo) {
                pthread_create(&t, NULL, releaser, NULL);
                pthread_create(&t, NULL, held_thread, NULL);
        }
        for (;;) {
                printf("held_calls=%lu held_wrong=%lu wrong=%lu new=%lu held=%d\n", atomic_load(&held_calls),
                       atomic_load(&held_wrong), atomic_load(&wrong), atomic_load(&newer), atomic_load(&is_held));
                usleep(20000);
        }
}
