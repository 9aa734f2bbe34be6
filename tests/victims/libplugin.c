/* A library the consistency victim dlopen()s on SIGHUP, after patches were applied. */
int plugin_value(void);
volatile int plugin_bias;
__attribute__((noipa)) int plugin_value(void) {
        return 100 + plugin_bias;
}
