/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Calls strlen, an IFUNC in glibc: its resolver would have to run in the target. */
#include <string.h>

#include <ulp/patch.h>

long unit_value_v4(void);
const char *word = "four";

long unit_value_v4(void) {
        return (long)strlen(word);
}

ULP_PATCH_INFO("unit-ifunc", "an IFUNC of the target");
ULP_FUNC(ULP_MAIN, "unit_value", unit_value_v4);
