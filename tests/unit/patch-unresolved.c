/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Calls a function no object of the test process defines: the loader refuses it. */
#include <ulp/patch.h>

long unit_value_v3(void);
extern long unit_nowhere(void);

long unit_value_v3(void) {
        return unit_nowhere() + 1;
}

ULP_PATCH_INFO("unit-unresolved", "an undefined symbol");
ULP_FUNC(ULP_MAIN, "unit_value", unit_value_v3);
