/*
 * Victim with stackful user-level threads: the main thread runs two fibers made with
 * makecontext() and switches between them with swapcontext(); each asks fiber_value()
 * and parks. Prints every 10 ms:
 *     tick N value=V
 */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>
#include <unistd.h>

volatile int bias;
static ucontext_t main_ctx, fib_ctx[2];
static int result[2];

__attribute__((noinline, noipa)) int fiber_value(int x);
__attribute__((noinline, noipa)) int fiber_value(int x) {
        int r = x + bias;
        for (int i = 0; i < 3; i++)
                r += i;
        return r;
}

static void fiber(int id) {
        for (;;) {
                result[id] = fiber_value(10);
                swapcontext(&fib_ctx[id], &main_ctx);
        }
}

int main(void) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        /* volatile: getcontext() returns twice as far as the compiler knows */
        for (volatile int i = 0; i < 2; i++) {
                getcontext(&fib_ctx[i]);
                fib_ctx[i].uc_stack.ss_size = 64 * 1024;
                fib_ctx[i].uc_stack.ss_sp = malloc(fib_ctx[i].uc_stack.ss_size);
                fib_ctx[i].uc_link = &main_ctx;
                makecontext(&fib_ctx[i], (void (*)(void))fiber, 1, i);
        }
        for (unsigned long tick = 0;; tick++) {
                for (int i = 0; i < 2; i++)
                        swapcontext(&main_ctx, &fib_ctx[i]);
                printf("tick %lu value=%d\n", tick, result[0]);
                usleep(10000);
        }
}
