/* Built for size (-Os, see the Makefile): no alignment padding between functions, so a
 * function shorter than ulp's entry jump has the next one right after it. */
#include "bank.h"

int twice(int x) {
        return 2 * x;
}

int thrice(int x) {
        return 3 * x;
}

/* Its loop branches back to its second instruction, inside the bytes an entry jump
 * would replace. */
int sum_to(int n) {
        int s = 0;
        while (n > 0)
                s += n--;
        return s;
}
