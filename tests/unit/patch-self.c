/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A patch for the loader's unit test, loaded into the test process itself: one
 * relocation of each kind the loader links and a ULP_REF into the test binary. */
#include <stdlib.h>

#include <ulp/patch.h>

long unit_value_v2(void);
extern int unit_absent_symbol(void) __attribute__((weak));

static long *counter_p;                   /* ULP_REF: unit_counter of the test */
const char *number = "42";               /* R_X86_64_RELATIVE; read through the GOT */

long unit_value_v2(void) {
        /* strtol: a PLT slot against libc (not an IFUNC, which the loader refuses); the
         * weak symbol nobody defines: 0. */
        return *counter_p * 10 + strtol(number, NULL, 10) + (unit_absent_symbol ? 1000 : 0);
}

ULP_PATCH_INFO("unit-self", "loaded into the unit test itself");
ULP_FUNC(ULP_MAIN, "unit_value", unit_value_v2);
ULP_REF(ULP_MAIN, "unit_counter", counter_p);
