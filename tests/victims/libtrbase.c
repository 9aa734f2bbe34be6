/* A library the consistency victim links: base_value is patched in it. */
int base_value(void);
volatile int base_bias;
__attribute__((noipa)) int base_value(void) {
        return 1 + base_bias;
}
