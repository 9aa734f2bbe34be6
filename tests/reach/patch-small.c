#include <ulp/patch.h>
ULP_PATCH_INFO("small-fix", "small_fn returns x+1000");
int small_v2(int x) { return x + 1000; }
ULP_FUNC(ULP_MAIN, "small_fn", small_v2);
