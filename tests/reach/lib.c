#include <time.h>
/* The shared library of tests/reach's victim (or part of its static builds). */
int lib_fn(int x);
volatile int lib_bias;
__attribute__((noinline, used)) int lib_fn(int x) {
        int r = x + lib_bias;
        for (int i = 0; i < 2; i++)
                r += i;
        return r + 999;
}

/* An IFUNC that nothing in the process calls through a GOT slot: no slot shows what its
 * resolver chose, so a patch calling it has the resolver run in the process. */
static int pick_plain(int x) {
        return x + 1;
}

int reach_pick(int x);
__attribute__((used)) static int (*pick_resolver(void))(int) {
        return pick_plain;
}

int reach_pick(int x) __attribute__((ifunc("pick_resolver")));

/* An IFUNC whose resolver returns data, not code: what it returns is not used. */
int reach_stray(int x);
__attribute__((used)) static int (*stray_resolver(void))(int) {
        return (int (*)(int))(void *)&lib_bias;
}

int reach_stray(int x) __attribute__((ifunc("stray_resolver")));

/* An IFUNC whose resolver takes a second: past a short callback deadline it runs on. */
int reach_slow(int x);
__attribute__((used)) static int (*slow_resolver(void))(int) {
        struct timespec ts = { 1, 0 };
        while (nanosleep(&ts, &ts) != 0)
                ;
        return pick_plain;
}

int reach_slow(int x) __attribute__((ifunc("slow_resolver")));
