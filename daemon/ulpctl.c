/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ulpctl: replaced by the full client as soon as libulp's operations land. */
#include <stdio.h>
int main(void) {
        fputs("ulpctl: not built yet\n", stderr);
        return 1;
}
