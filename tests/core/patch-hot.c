#include <ulp/patch.h>
ULP_PATCH_INFO("hot-fix", "a new version of the hot 14-byte function");
long hot14_v2(long x) { return x + 2; }
ULP_FUNC(ULP_MAIN, "hot14", hot14_v2);
