#include <ulp/patch.h>
/* Calls an IFUNC of libreach.so whose resolver takes a second. */
ULP_PATCH_INFO("slow-fix", "mid_fn through an IFUNC with a slow resolver");
int reach_slow(int x);
int mid_v6(int x) { return reach_slow(x); }
ULP_FUNC(ULP_MAIN, "mid_fn", mid_v6);
