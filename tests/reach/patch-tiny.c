#include <ulp/patch.h>
ULP_PATCH_INFO("tiny-fix", "tiny_fn returns x+100");
int tiny_v2(int x) { return x + 100; }
ULP_FUNC(ULP_MAIN, "tiny_fn", tiny_v2);
