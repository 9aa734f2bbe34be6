#include <ulp/patch.h>
ULP_PATCH_INFO("crash", "outer/inner version 2, whose pre-patch callback crashes");
#include "patch-v2.h"

/* A store to an address no process maps (hidden from the compiler): the fault ends the
 * call, which the patcher takes back (the signal is kept from the process). */
static volatile unsigned long nowhere = 16;

static int pre_patch(void) {
        *(volatile int *)nowhere = 1;
        return 0;
}
ULP_CALLBACKS(ULP_MAIN, pre_patch, NULL, NULL, NULL);
