/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A patch naming an object the test process never loads, besides the test binary: its
 * apply records that object as late, waited for (a library patch and a plugin not
 * loaded yet, docs/control-block.md "Objects loaded later"). */
#include <ulp/patch.h>

long unit_value_v4(void);
long unit_later_v2(void);

long unit_value_v4(void) {
        return 7;
}

long unit_later_v2(void) {
        return 8;
}

ULP_PATCH_INFO("unit-late", "names an object the test process has not loaded");
ULP_FUNC(ULP_MAIN, "unit_value", unit_value_v4);
ULP_FUNC("libulp-unit-never.so.1", "unit_later", unit_later_v2);
