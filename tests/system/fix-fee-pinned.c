/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* examples/fix-fee.c pinned to one build of the example server, as a sticky patch
 * (apply --all --persist) must be. Built by test-nspawn.sh with
 * -DBANK_BUILD_ID="<the build-id of examples/bank>". */

#include <ulp/patch.h>

long fee_for_v2(long cents);

ULP_PATCH_INFO("fix-fee-pinned", "fee_for: charge 1 %, not 10 %, in one build of bank");

long fee_for_v2(long cents) {
        long fee = cents / 100;
        return fee < 50 ? 50 : fee;
}

ULP_FUNC(ULP_MAIN, "fee_for", fee_for_v2);
ULP_BUILD_ID(ULP_MAIN, BANK_BUILD_ID);
