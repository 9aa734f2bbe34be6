/*
 * The hot small function: threads call hot14(), 14 bytes whose first seven (the bytes
 * the entry jump displaces) hold three instructions, the first two slow, in a tight
 * loop, so that at almost any stop some thread sits strictly inside them. The original
 * returns x + 1, the patch's version x + 2. Prints every 20 ms:
 *     v1=N v2=N wrong=N
 * (calls that returned the original's result, the patch's, and anything else).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

long hot14(long x);
__asm__(".text\n"
        ".globl hot14\n"
        ".type hot14, @function\n"
        ".p2align 4\n"
        "hot14:\n"
        "        pause\n"                  /* +0, 2 bytes: slow, so that interrupts, */
        "        pause\n"                  /* +2, and the stops they bring, land on */
        "        mov %rdi, %rax\n"         /* +4, the instructions after them */
        "        inc %rax\n"               /* +7 */
        "        nop\n"                    /* +10 */
        "        nop\n"
        "        nop\n"
        "        ret\n"                    /* +13 */
        ".size hot14, .-hot14\n");

static long (*volatile call)(long) = hot14;
static atomic_ulong v1, v2, wrong;

static void *worker(void *arg) {
        long x = (long)(uintptr_t)arg;
        unsigned long a = 0, b = 0, w = 0;

        for (;;) {
                long r = call(x);
                /* Work between calls, with slow instructions too: a thread stops in
                 * hot14 about one time in five, so that it is checked outside it soon. */
                for (int k = 0; k < 8; k++)
                        __builtin_ia32_pause();
                if (r == x + 1)
                        a++;
                else if (r == x + 2)
                        b++;
                else
                        w++;
                x = (x + 1) & 0xffff;
                if (((a + b + w) & 1023) == 0) {
                        atomic_fetch_add(&v1, a);
                        atomic_fetch_add(&v2, b);
                        atomic_fetch_add(&wrong, w);
                        a = b = w = 0;
                }
        }
        return NULL;
}

int main(int argc, char **argv) {
        int n = argc > 1 ? atoi(argv[1]) : 16;
        pthread_t t;

        setvbuf(stdout, NULL, _IOLBF, 0);
        for (int i = 0; i < n; i++)
                pthread_create(&t, NULL, worker, (void *)(uintptr_t)(i * 1000));
        for (;;) {
                printf("v1=%lu v2=%lu wrong=%lu\n", atomic_load(&v1), atomic_load(&v2), atomic_load(&wrong));
                usleep(20000);
        }
}
