#include <ulp/patch.h>
ULP_PATCH_INFO("static-fix", "static_fn returns x+200");
static int static_fn_v2(int x) { return x + 200; }
ULP_FUNC(ULP_MAIN, "static_fn", static_fn_v2);
