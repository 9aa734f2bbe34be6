#include <ulp/patch.h>
/* Calls an IFUNC of libreach.so whose resolver returns data: refused. */
ULP_PATCH_INFO("stray-fix", "mid_fn through an IFUNC that resolves to data");
int reach_stray(int x);
int mid_v5(int x) { return reach_stray(x); }
ULP_FUNC(ULP_MAIN, "mid_fn", mid_v5);
