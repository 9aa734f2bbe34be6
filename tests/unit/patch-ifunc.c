/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Calls wmemcmp, an IFUNC in glibc (which sanitizer runtimes do not interpose): it
 * binds to the implementation the target's dynamic linker chose. */
#include <wchar.h>

#include <ulp/patch.h>

long unit_value_v4(void);
const wchar_t *word = L"four";

long unit_value_v4(void) {
        return wmemcmp(word, L"five", 4);
}

ULP_PATCH_INFO("unit-ifunc", "an IFUNC of the target");
ULP_FUNC(ULP_MAIN, "unit_value", unit_value_v4);
