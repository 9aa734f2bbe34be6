/*
 * Stand-in for a Go program (no Go toolchain is needed to build the tests): what ulp
 * looks at in a Go binary, made as the Go linker makes it.
 *   GO_BUILDINFO: a ".go.buildinfo" section (writable data), starting with the
 *     "\xff Go buildinf:" magic, pointer size 8, flags 2 (strings inline, as Go 1.18 and
 *     later write them), then the version string; kept by a stripped build (-ldflags=-s).
 *   GO_SYMBOL: a "runtime.goexit" function in .symtab, as every Go binary that is not
 *     stripped has (the return address at the bottom of each goroutine's stack).
 * Prints every 10 ms:
 *     tick N value=V
 */
#include "fiber-value.h"

#ifdef GO_BUILDINFO
__attribute__((section(".go.buildinfo"), used, aligned(16)))
static char go_buildinfo[48] = "\xff Go buildinf:\x08\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x08go1.19.8";
#endif
#ifdef GO_SYMBOL
__asm__(".text\n"
        ".globl runtime.goexit\n"
        ".type runtime.goexit, @function\n"
        "runtime.goexit:\n"
        "nop\n"
        "ret\n"
        ".size runtime.goexit, 2\n");
#endif

int main(void) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        for (unsigned long tick = 0;; tick++) {
                printf("tick %lu value=%d\n", tick, fiber_value(10));
                usleep(10000);
        }
}
