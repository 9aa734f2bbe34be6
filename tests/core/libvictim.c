/* A shared library the victim loads: lib_value is patched in it. */
int lib_value(int x);
volatile int lib_bias;
__attribute__((noipa)) int lib_value(int x) {
        return x + 1000 + lib_bias;
}
