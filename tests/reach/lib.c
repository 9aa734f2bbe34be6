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
 * resolver would choose, so a patch calling it is refused. */
static int pick_plain(int x) {
        return x + 1;
}

int reach_pick(int x);
static int (*pick_resolver(void))(int) {
        return pick_plain;
}

int reach_pick(int x) __attribute__((ifunc("pick_resolver")));
