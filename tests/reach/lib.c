/* The shared library of tests/reach's victim (or part of its static builds). */
int lib_fn(int x);
volatile int lib_bias;
__attribute__((noinline, used)) int lib_fn(int x) {
        int r = x + lib_bias;
        for (int i = 0; i < 2; i++)
                r += i;
        return r + 999;
}
