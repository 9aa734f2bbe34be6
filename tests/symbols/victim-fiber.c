/*
 * Victim with stackful user-level threads: the main thread runs two fibers made with
 * makecontext() and switches between them with swapcontext(); each asks fiber_value()
 * and parks. Prints every 10 ms:
 *     tick N value=V
 */
#include <stdlib.h>
#include <ucontext.h>

#include "fiber-value.h"

static ucontext_t main_ctx, fib_ctx[2];
static int result[2];

static void fiber(int id) {
        for (;;) {
                result[id] = fiber_value(10);
                swapcontext(&fib_ctx[id], &main_ctx);
        }
}

static void resume(int id) {
        swapcontext(&main_ctx, &fib_ctx[id]);
}

int main(void) {
        /* volatile: getcontext() returns twice as far as the compiler knows */
        for (volatile int i = 0; i < 2; i++) {
                getcontext(&fib_ctx[i]);
                fib_ctx[i].uc_stack.ss_size = 64 * 1024;
                fib_ctx[i].uc_stack.ss_sp = malloc(fib_ctx[i].uc_stack.ss_size);
                fib_ctx[i].uc_link = &main_ctx;
                makecontext(&fib_ctx[i], (void (*)(void))fiber, 1, i);
        }
        tick_fibers(resume, &result[0]);
}
