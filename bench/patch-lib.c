/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ulp/patch.h>

ULP_PATCH_INFO("benchlib", "blib_value with another constant");

int blib_value_v2(int x);

__attribute__((noipa)) int blib_value_v2(int x) {
        for (int i = 0; i < 8; i++) {
                x = x * 37 + i;
                __asm__ volatile("" : "+r"(x));
        }
        return x;
}
ULP_FUNC("libbench-lib.so", "blib_value", blib_value_v2);
