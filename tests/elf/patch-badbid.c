/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A patch whose build-id pin is not hexadecimal: malformed metadata. */

#include <ulp/patch.h>

static int helper_v4(int x) {
        return x + 4;
}

ULP_FUNC(ULP_MAIN, "helper", helper_v4);
ULP_BUILD_ID(ULP_MAIN, "not-hex!");
