/*
 * The fix for bank: the tariff is 1 %, at least 0.50. Build it with
 *     cc -shared -fPIC -O2 -I include examples/fix-fee.c -o fix-fee.so
 */
#include <ulp/patch.h>

ULP_PATCH_INFO("fix-fee", "fee_for: charge 1 %, not 10 %");

long fee_for_v2(long cents) {
        long fee = cents / 100;
        return fee < 50 ? 50 : fee;
}

ULP_FUNC(ULP_MAIN, "fee_for", fee_for_v2);
