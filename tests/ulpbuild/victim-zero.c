/* A program whose zero_fn() has no size in its symbol table (assembly without .size):
 * ulp cannot know where it ends, and refuses it (patcher/entry-check.c). */
#include <unistd.h>

__asm__(".text\n.globl zero_fn\n.type zero_fn, @function\nzero_fn:\n\tmov $1, %eax\n\tret\n");
int zero_fn(void);

int main(void) {
        for (;;) {
                zero_fn();
                usleep(10000);
        }
}
