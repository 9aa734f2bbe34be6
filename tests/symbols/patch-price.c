#include <ulp/patch.h>
ULP_PATCH_INFO("price-fix", "price returns x+1000");
static int price_v2(int x) { return x + 1000; }
ULP_FUNC(ULP_MAIN, "price", price_v2);
