/* Patches the objects PID loaded since its patches were applied (ulp_apply_late),
 * as ulpd does when it sees a library loaded. Exit 0 when some object was patched,
 * 1 otherwise, with the reason on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ulp/libulp.h"

int main(int argc, char **argv) {
        UlpReport rep = {};
        int r;

        if (argc != 2) {
                fprintf(stderr, "usage: %s PID\n", argv[0]);
                return 2;
        }
        r = ulp_apply_late(atoi(argv[1]), &rep);
        if (r > 0)
                printf("patched %d object(s) of %s\n", r, rep.patch_name);
        else
                fprintf(stderr, "%s\n", r == 0 ? "no pending object is loaded yet" : rep.message[0] ? rep.message : strerror(-r));
        ulp_report_done(&rep);
        return r > 0 ? 0 : 1;
}
